"""Results writer: JSON, Markdown tables, PNG charts."""

import json

from graftlm.bench import report

RESULTS = {
    "machine": {"cpu": "test cpu", "logical_cores": 2, "torch_threads": 2},
    "segments": [dict(tokenizer="t", source="pydoc", segmenter="paper rule", segments=10, tokens=80, mean=8.0, max_len=20)],
    "throughput": [
        dict(backbone="bb", batch=1, method="lean_loop", tokens_per_s=10.0, spread=0.1),
        dict(backbone="bb", batch=1, method="sllm-H1", tokens_per_s=25.0, spread=0.05, speedup=2.5,
             mac_bound=3.0, of_bound=2.5 / 3.0),
    ],
    "kv": [dict(backbone="bb", side="backbone", tokens=1024, positions=1024, bytes=1024 * 2048,
                bytes_per_token=2048.0, ratio=1.0),
           dict(backbone="bb", side="sllm", segmenter="paper rule", tokens=1024, positions=128,
                bytes=128 * 2048, bytes_per_token=256.0, ratio=0.125)],
}


def test_markdown_has_one_row_per_throughput_measurement(tmp_path):
    text = report.write_markdown(RESULTS, tmp_path / "r.md")
    assert text.count("| bb | 1 |") == 2


def test_markdown_shows_kv_ratio_as_percent(tmp_path):
    text = report.write_markdown(RESULTS, tmp_path / "r.md")
    assert "12.5%" in text


def test_charts_are_written_as_png(tmp_path):
    paths = report.write_charts(RESULTS, tmp_path)
    assert paths and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_json_is_written_with_sorted_keys_for_diffs(tmp_path):
    report.save_json(RESULTS, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text) == RESULTS
    assert text.index('"kv"') < text.index('"machine"') < text.index('"segments"') < text.index('"throughput"')
    assert text.index('"bytes"') < text.index('"bytes_per_token"') < text.index('"positions"')
