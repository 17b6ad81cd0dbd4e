"""The QA benchmark runs and writes its JSON and plot (tiny model, one repeat)."""

import json

from bench.__main__ import run


def test_bench_writes_json_and_plot(tiny_build, tmp_path):
    result, _ = tiny_build
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps({"text": t, "kind": "single", "expect": []})
                               for t in ["set the fan to three", "turn on the ac", "hello", "open the sunroof",
                                         "volume up", "call mom"]) + "\n")
    path = run(result.model, cases, repeats=1, out_dir=tmp_path / "out")
    report = json.loads(path.read_text())
    assert path.with_suffix(".png").stat().st_size > 1000
    assert report["machine"]["cores"] >= 1 and report["settings"]["commands"] == 6
    assert report["tokens"]["prompt_tokens_per_s"] > 0 and report["tokens"]["decode_tokens_per_s"] > 0
    for mode in ("pinned", "unpinned"):
        for condition in ("quiet_ms", "with_competing_load_ms"):
            assert report["latency"][mode][condition]["p95"] >= report["latency"][mode][condition]["p50"] > 0
    assert 0 < report["decode_vs_bandwidth"]["fraction_of_limit"]
    assert report["memory_bandwidth_gbs"] > 0 and report["process"]["peak_rss_mib"] > 0
