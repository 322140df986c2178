import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_data")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import helpers  # noqa: E402,F401  (registers the test-only extractor)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory):
    """sample_data extracted once per session with every default extractor."""
    from pipeline.extract import extract

    root = str(tmp_path_factory.mktemp("sample-store"))
    summaries = {}
    for modality, manifest in (("image", "images/manifest.csv"), ("text", "texts.jsonl"), ("audio", "audio/manifest.csv")):
        summaries[modality] = extract(os.path.join(SAMPLE, manifest), modality, dataset=f"sample-{modality}", store=root)
    return root, summaries
