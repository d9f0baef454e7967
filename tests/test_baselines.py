"""RL baselines: real Stable-Baselines3 on real tasks, tiny budgets (they train, test and write; no accuracy)."""

from __future__ import annotations

import json
import sys

import gymnasium
import pytest

from tests.llm_server import ScriptedLLMServer, answer
from tests.test_cli import WORKING, run_here
from trace_control import baselines
from trace_control.config import TrainConfig, format_seeds
from trace_control.evaluation import wilson_interval
from trace_control.report import comparison_row, comparison_table
from trace_control.runs import RunFolder

pytest.importorskip("stable_baselines3", reason='needs the rl extra: pip install -e ".[rl]" (the test extra has it)')
torch = pytest.importorskip("torch")

RUN_FILES = ["config.json", "log.jsonl", "policy.zip", "test_episodes.json", "results.json", "learning_curve.png"]
TEST_SEEDS = list(range(2000, 2005))


@pytest.fixture(scope="module")
def sac_on_reach(tmp_path_factory):
    """SAC for 64 steps on Meta-World reach, tested on five of the test placements."""
    folder = tmp_path_factory.mktemp("runs") / "reach-sac"
    results = baselines.train_baseline("reach", "sac", 64, 0, folder, test_seeds=TEST_SEEDS, echo=lambda line: None)
    return RunFolder(folder), results


def test_sac_on_metaworld_trains_tests_on_the_test_placements_and_writes_its_folder(sac_on_reach):
    run, results = sac_on_reach
    assert all(run.file(name).is_file() for name in RUN_FILES)
    assert results == run.read_json("results.json") and results["status"] == "completed"
    assert results["env_steps"]["train"] == 64 and results["llm"]["total_tokens"] == 0
    episodes = run.read_json("test_episodes.json")
    assert [episode["seed"] for episode in episodes] == TEST_SEEDS
    assert results["test"]["env_steps"] == sum(episode["length"] for episode in episodes)
    successes = sum(episode["success"] for episode in episodes)
    assert results["test"]["success_rate"] == successes / len(TEST_SEEDS)
    assert results["test"]["success_interval"] == [round(bound, 4) for bound in wilson_interval(successes, 5)]
    settings = run.read_json("config.json")["settings"]
    assert settings["test_seeds"] == "2000-2004" and settings["train_seeds"] == format_seeds(TrainConfig().train_seeds)
    curve = [record for record in run.read_log() if record["kind"] == "rl"]
    assert curve and curve[-1]["env_steps"] <= 64 and curve[-1]["episodes"] == results["train_episodes"] > 0


def test_the_saved_policy_learned_and_is_the_one_tested(sac_on_reach):
    run, results = sac_on_reach
    trained = baselines.load_model(run)
    config = baselines.baseline_config("reach", "sac", 64, 0, test_seeds=TEST_SEEDS)
    first, second = (baselines.build_model(config, baselines.training_env(config)).policy.state_dict()
                     for _ in range(2))
    assert all(torch.equal(first[name], second[name]) for name in first)  # the seed fixes the starting weights
    after = trained.policy.state_dict()
    assert any(not torch.equal(first[name], after[name]) for name in first)  # so learning changed them
    again = baselines.evaluate_network(trained, "reach", TEST_SEEDS, config.env_kwargs)
    assert again.return_mean == pytest.approx(results["test"]["return_mean"], abs=1e-6)


def test_training_episodes_start_only_on_training_placements():
    pool = [5, 6]
    env = baselines.TrainingPlacements(gymnasium.make("trace_control/MetaWorld-reach-v3"), pool, seed=0)
    try:
        placements = {env.reset(seed=2000)[1]["placement_seed"] for _ in range(4)}
    finally:
        env.close()
    assert placements == set(pool)


def test_ppo_on_a_gymnasium_task_from_the_command_line_uses_the_default_test_placements(tmp_path, capsys):
    args = ["baseline", "reacher", "--algo", "ppo", "--steps", "64", "--seed", "3", "--runs-dir", str(tmp_path),
            "--no-progress"]
    code, out, err = run_here([*args, "--run-name", "first"], capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "first" / "results.json").read_text())
    assert results["test_seeds"] == 50 and results["env_steps"] == {"train": 64, "validation": 0, "test": 50 * 50}
    assert "test placements 2000-2049" in out and "done: PPO after 64 steps" in out
    assert json.loads((tmp_path / "first" / "config.json").read_text())["settings"]["test_seeds"] == "2000-2049"
    assert run_here([*args, "--run-name", "again"], capsys)[0] == 0
    assert json.loads((tmp_path / "again" / "results.json").read_text())["test"] == results["test"]  # --seed


def test_without_stable_baselines_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # what an import finds when it is not installed
    code, _, err = run_here(["baseline", "reach", "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and 'pip install "trace-control[rl]"' in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--algo", "a2c"], "invalid choice: 'a2c'"),
    (["--steps", "1"], "steps must be at least 2"),
    (["--device", "cuda"], "use --device cpu"),
    (["--test-seeds", "990-1009"], "share placement 990"),
    (["--seed", "-1"], "seed must be at least 0"),
])
def test_bad_input_is_one_clear_line_before_any_work(args, message, tmp_path, capsys):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, _, err = run_here(["baseline", "reach", "--runs-dir", str(tmp_path), *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_report_puts_an_llm_run_and_an_rl_run_side_by_side(sac_on_reach, tmp_path, capsys, monkeypatch):
    rl_run, rl_results = sac_on_reach
    with ScriptedLLMServer([answer({"__code0": WORKING}, "move to the goal")]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
        code, _, err = run_here(["train", "reach", "--iterations", "1", "--batch", "1", "--runs-dir", str(tmp_path),
                                 "--run-name", "llm", "--validation-seeds", "1000-1001", "--test-seeds", "2000-2004",
                                 "--in-process", "--no-progress", "--model", "gpt-4o-mini"], capsys)
    assert code == 0, err
    out_file = tmp_path / "comparison.md"
    code, out, err = run_here(["report", str(tmp_path / "llm"), str(rl_run.path), "--out", str(out_file)], capsys)
    assert code == 0, err
    table = out_file.read_text()
    llm_results = json.loads((tmp_path / "llm" / "results.json").read_text())
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| reach |")}
    assert set(rows) == {"trace", "sac"}
    assert f"| {llm_results['llm']['total_tokens']:,} |" in rows["trace"] and "| - |" in rows["sac"]
    assert f"| {rl_results['env_steps']['train']:,} |" in rows["sac"] and "RL: SAC" in rows["sac"]
    assert "reach: every run tested on placements 2000-2004" in table and table in out
    other = comparison_row(RunFolder(tmp_path / "llm")) | {"test_placements": "2000-2002"}
    assert "Warning: the reach runs were tested on different placements" in comparison_table(
        [other, comparison_row(rl_run)])


def test_report_of_an_rl_run_shows_its_results_and_every_test_episode(sac_on_reach, capsys):
    run, _ = sac_on_reach
    code, out, err = run_here(["report", str(run.path)], capsys)
    assert code == 0, err
    page = run.file("report.html").read_text()
    assert "Test episodes" in page and all(f"<td>{seed}</td>" in page for seed in TEST_SEEDS)
    assert "SAC.load(" in page and "wrote html" in out and "video" not in out
