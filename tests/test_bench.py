"""The QA benchmark runs and writes its JSON and plot (tiny model, one repeat)."""

import json

from bench.__main__ import run


def test_bench_writes_json_and_plot(tiny_build, tmp_path):
    result, _ = tiny_build
    cases = tmp_path / "cases.jsonl"
    lines = [json.dumps({"text": t, "kind": "single", "expect": []})
             for t in ["set the fan to three", "turn on the ac", "hello", "open the sunroof", "volume up"]]
    lines.append(json.dumps({"text": "lock the doors", "kind": "single",
                             "expect": [{"function": "set_door_lock", "args": {"locked": True}}]}))
    cases.write_text("\n".join(lines) + "\n")
    path = run(result.model, cases, repeats=1, out_dir=tmp_path / "out", compare_models=[])
    report = json.loads(path.read_text())
    assert path.with_suffix(".png").stat().st_size > 1000
    assert report["machine"]["cores"] >= 1 and report["settings"]["commands"] == 6
    assert report["tokens"]["prompt_tokens_per_s"] > 0 and report["tokens"]["decode_tokens_per_s"] > 0
    for mode in ("pinned", "unpinned"):
        for condition in ("quiet_ms", "with_competing_load_ms"):
            assert report["latency"][mode][condition]["p95"] >= report["latency"][mode][condition]["p50"] > 0
    assert 0 < report["decode_vs_bandwidth"]["fraction_of_limit"]
    assert report["memory_bandwidth_gbs"] > 0 and report["process"]["peak_rss_mib"] > 0
    decoders = report["decoders"]
    assert set(decoders) == {"functional_tokens", "hassil", "json_tool_calling"}
    for entry in decoders.values():
        assert 0 <= entry["accuracy"] <= 1 and entry["cases"] == 6
        assert entry["latency_ms"]["p95"] >= entry["latency_ms"]["p50"] >= 0
    # hassil fed the project's templates matches the templated command (the others expect nothing here)
    assert decoders["hassil"]["passed"] >= 2  # "lock the doors" and "hello"
    assert decoders["json_tool_calling"]["prompt_prefix_tokens"] > 500  # every schema is in the prompt
    assert list(report["models"]) == [result.model.stem] and report["models"][result.model.stem]["mib"] > 0
    # the model compared as a build is scored as the daemon's decoder is: the same thresholds, the same figures
    as_build = report["models"][result.model.stem]
    for key in ("passed", "false_actuations", "wrong_actuations"):
        assert as_build[key] == decoders["functional_tokens"][key], key
