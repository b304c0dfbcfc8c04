"""The FID Inception weights without a manual step: found in torch's hub cache, fetched there once when
missing (here from a local HTTP server: tests reach no other host), and one readable line offline."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ganforge.data.digits import DigitsDataModule
from ganforge.errors import ConfigError
from ganforge.metrics import features
from ganforge.metrics.features import (
    INCEPTION,
    INCEPTION_FILE,
    PYTORCH_FID_FILE,
    inception_weights,
    write_random_inception_weights,
)
from ganforge.metrics.suite import MetricSettings, build_extractor

OFFLINE = "http://127.0.0.1:9/weights-inception-2015-12-05-6726825d.pth"  # the discard port: refused at once


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache of this test's own (TORCH_HOME), as on a fresh machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FID Inception architecture with random values: a real weights file, not real FID weights."""
    return write_random_inception_weights(tmp_path_factory.mktemp("weights") / "inception.pth")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server of the files in a folder: (its address, the folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_offline_is_one_line_naming_the_url_the_cache_the_option_and_selfsup(hub: Path) -> None:
    start = time.time()
    with pytest.raises(ConfigError) as info:
        inception_weights(None, url=OFFLINE, timeout=2)
    message = str(info.value)
    assert time.time() - start < 5 and "\n" not in message
    assert OFFLINE in message and str(hub / INCEPTION_FILE) in message
    assert "metrics.weights_path=" in message and "metrics.extractor=selfsup" in message
    assert info.value.reason.startswith("URLError")  # type: ignore[attr-defined]
    assert not hub.exists() or list(hub.iterdir()) == []  # nothing half-written left behind
    with pytest.raises(ConfigError):  # asked again in the same process: not tried again, same line
        inception_weights(None, url=OFFLINE, timeout=2)


def test_a_copy_in_the_hub_cache_is_found_and_used_without_the_network(
    hub: Path, random_weights: Path
) -> None:
    hub.mkdir(parents=True)
    cached = hub / INCEPTION_FILE
    cached.write_bytes(random_weights.read_bytes())
    assert inception_weights(None, url=OFFLINE) == str(cached)
    extractor = build_extractor(
        MetricSettings(names=["fid"], extractor="inception"), DigitsDataModule(resolution=8), "unused", "cpu"
    )
    assert extractor.name == INCEPTION and extractor.weights_path == str(cached)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        assert extractor.build(["2048"])(x)[0].shape == (2, 2048)


def test_pytorch_fids_copy_counts_too(hub: Path, random_weights: Path) -> None:
    hub.mkdir(parents=True)
    (hub / PYTORCH_FID_FILE).write_bytes(random_weights.read_bytes())
    assert inception_weights(None, url=OFFLINE) == str(hub / PYTORCH_FID_FILE)


def test_fetched_once_into_the_hub_cache(hub: Path, random_weights: Path, server: tuple[str, Path]) -> None:
    address, root = server
    (root / INCEPTION_FILE).write_bytes(random_weights.read_bytes())
    path = inception_weights(None, url=f"{address}/{INCEPTION_FILE}", timeout=10)
    assert path == str(hub / INCEPTION_FILE) and list(hub.iterdir()) == [hub / INCEPTION_FILE]
    assert (hub / INCEPTION_FILE).read_bytes() == random_weights.read_bytes()
    (root / INCEPTION_FILE).unlink()  # the server no longer has it: the cached copy serves
    assert inception_weights(None, url=f"{address}/{INCEPTION_FILE}") == path


def test_a_page_that_is_not_the_weights_is_not_kept(hub: Path, server: tuple[str, Path]) -> None:
    """A captive portal or a proxy's error page answers 200 with HTML: refused, the cache stays empty."""
    address, root = server
    (root / "portal.pth").write_text("<html>please log in</html>")
    with pytest.raises(ConfigError, match="not a weights file"):
        inception_weights(None, url=f"{address}/portal.pth", timeout=10)
    assert list(hub.iterdir()) == []


def test_the_default_address_is_torch_fidelitys_release() -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert features.INCEPTION_URL == URL_INCEPTION_V3 and URL_INCEPTION_V3.endswith("/" + INCEPTION_FILE)
