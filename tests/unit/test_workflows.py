"""The GitHub workflows agree with `harness plan` and keep their rules: the nightly job graph
(job ids, needs, the plan's outputs read with fromJSON, artifact names), least privilege,
every action pinned to a commit, no expression inside a run: script. Also the rehearsal's
expression evaluator (.ci/rehearse.py) on the forms the workflow uses."""
import fnmatch
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from harness import config
from harness.expand import ci_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOWS = os.path.join(ROOT, ".github", "workflows")
NIGHTLY = os.path.join(WORKFLOWS, "nightly.yml")
MATRICES = ["matrix.yaml", "matrices/versions.yaml"]


def _rehearse():
    spec = importlib.util.spec_from_file_location("rehearse", os.path.join(ROOT, ".ci",
                                                                           "rehearse.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rehearse = _rehearse()


def workflow(name):
    return rehearse.load_workflow(os.path.join(WORKFLOWS, name))


def workflow_files():
    return sorted(f for f in os.listdir(WORKFLOWS) if f.endswith((".yml", ".yaml")))


@pytest.fixture(scope="module")
def nightly():
    return workflow("nightly.yml")


@pytest.fixture(scope="module", params=MATRICES)
def plan(request):
    return ci_plan(config.load(os.path.join(ROOT, request.param)), request.param)


def steps_of(job):
    return job.get("steps") or []


def run_step(job, pattern):
    found = [s for s in steps_of(job) if re.search(pattern, s.get("run", ""), re.M)]
    assert len(found) == 1, f"one step runs {pattern!r}, found {len(found)}"
    return found[0]


def uses_steps(job, action):
    return [s for s in steps_of(job) if s.get("uses", "").split("@")[0] == action]


def test_triggers(nightly):
    on = nightly["on"]
    assert set(on) == {"schedule", "workflow_dispatch"}
    assert on["schedule"][0]["cron"]
    assert on["workflow_dispatch"]["inputs"]["matrix"]["default"] == "matrix.yaml"
    # a scheduled night (no inputs) runs the versions matrix
    plan_step = run_step(nightly["jobs"]["plan"], r"^harness plan ")
    assert plan_step["env"]["MATRIX"] == "${{ inputs.matrix || 'matrices/versions.yaml' }}"
    for inputs, expected in (({}, "matrices/versions.yaml"),
                             ({"matrix": "matrix.yaml"}, "matrix.yaml")):
        ev = rehearse.Evaluator({"inputs": inputs})
        assert rehearse.interpolate(plan_step["env"]["MATRIX"], ev) == expected


def test_job_graph(nightly):
    jobs = nightly["jobs"]
    assert list(jobs) == ["plan", "create", "consume", "merge", "deploy"]
    needs = {k: v.get("needs") for k, v in jobs.items()}
    assert needs == {"plan": None, "create": "plan", "consume": ["plan", "create"],
                     "merge": ["plan", "create", "consume"], "deploy": "merge"}
    assert jobs["merge"]["if"] == "always()"
    # consume runs over whatever create shards exist; deploy publishes a regression night
    assert "!cancelled()" in jobs["consume"]["if"]
    assert "needs.merge.outputs.pages == 'true'" in jobs["deploy"]["if"]
    assert rehearse._order(jobs) == list(jobs)


def test_plan_outputs_feed_the_matrices(nightly, plan, tmp_path):
    """The plan job's outputs are what `harness plan --github-output` writes, and the
    create/consume matrices read them with fromJSON."""
    jobs = nightly["jobs"]
    step = run_step(jobs["plan"], r"^harness plan ")
    assert step["run"].split() == ["harness", "plan", "--json", "--matrix", '"$MATRIX"',
                                   "--github-output", '"$GITHUB_OUTPUT"']
    out = tmp_path / "github_output"
    proc = subprocess.run([sys.executable, "-m", "harness", "plan", "--json", "--matrix",
                           plan["matrix"], "--github-output", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    written = rehearse._read_kv(str(out))
    assert set(written) == {"create", "consume", "matrix"}
    outputs = jobs["plan"]["outputs"]
    for key in written:
        assert outputs[key] == f"${{{{ steps.{step['id']}.outputs.{key} }}}}"
    for stage in ("create", "consume"):
        strategy = jobs[stage]["strategy"]
        assert strategy["fail-fast"] is False
        assert strategy["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.{stage}) }}}}"
        ev = rehearse.Evaluator({"needs": {"plan": {"outputs": written}}})
        expanded = list(rehearse._combinations(rehearse.interpolate(strategy["matrix"], ev)))
        assert expanded == plan[stage]["include"]
        assert len(expanded) == plan["jobs"][stage]


def test_matrix_keys_exist_in_every_job(nightly, plan):
    for stage in ("create", "consume"):
        job = nightly["jobs"][stage]
        expressions = re.findall(r"\$\{\{(.*?)\}\}", str(job))
        expressions += [s["if"] for s in steps_of(job) if isinstance(s.get("if"), str)]
        used = {key for text in expressions  # outside the quoted strings ('matrix.yaml')
                for key in re.findall(r"\bmatrix\.(\w+)", re.sub(r"'[^']*'", "", text))}
        assert used, f"{stage} reads no matrix key"
        assert "python" in used
        for entry in plan[stage]["include"]:
            assert used <= set(entry), f"{stage}: {used - set(entry)} not in the plan's {entry}"


def test_artifact_names(nightly, plan):
    jobs = nightly["jobs"]
    planned = {stage: [j["artifact"] for j in plan[stage]["include"]]
               for stage in ("create", "consume")}
    for stage in ("create", "consume"):
        assert all(a.startswith(f"{stage}-") for a in planned[stage])
        shard, junit = uses_steps(jobs[stage], "actions/upload-artifact")
        assert shard["with"]["name"] == "${{ matrix.artifact }}"
        assert shard["with"]["path"].split() == (
            ["shard/"] if stage == "create" else ["shard/", "!shard/store/"])
        assert shard["with"]["include-hidden-files"] is True
        assert junit["with"] == {"name": "junit-${{ matrix.artifact }}",
                                 "path": "shard/junit/*.xml", "retention-days": 30}
        assert shard["if"] == junit["if"] == "always()"
        out_dir = run_step(jobs[stage], rf"--stage {stage}\b")["run"]
        assert '--out "$PWD/shard"' in out_dir and "--run-id \"$RUN_ID\"" in out_dir
    (download,) = uses_steps(jobs["consume"], "actions/download-artifact")
    assert download["with"]["merge-multiple"] is False
    assert [a for a in planned["create"] + planned["consume"]
            if fnmatch.fnmatchcase(a, download["with"]["pattern"])] == planned["create"]
    assert '--store "$PWD"/stores/*' in run_step(jobs["consume"], r"--stage consume")["run"]
    assert download["with"]["path"] == "stores"
    patterns = [d["with"]["pattern"] for d in uses_steps(jobs["merge"],
                                                         "actions/download-artifact")]
    every = planned["create"] + planned["consume"]
    assert sorted(a for a in every if any(fnmatch.fnmatchcase(a, p) for p in patterns)) == \
        sorted(every)
    # the JUnit artifacts are not shards
    assert not any(fnmatch.fnmatchcase(f"junit-{a}", p) for a in every for p in patterns)


def test_merge_job_commands(nightly):
    merge = nightly["jobs"]["merge"]
    assert re.search(r'harness merge shards/\* --out run --matrix "\$MATRIX" --run-id '
                     r'"\$RUN_ID" \\\s+--baseline "\$SITE_URL" --history "\$SITE_URL"',
                     run_step(merge, r"^\s*harness merge")["run"])
    report = run_step(merge, r"^\s*harness report")
    assert re.search(r'harness report run --matrix "\$MATRIX" --baseline "\$SITE_URL" '
                     r'--history "\$SITE_URL" \\\s+--fail-on regression', report["run"])
    assert '"$GITHUB_STEP_SUMMARY"' in run_step(merge, r"GITHUB_STEP_SUMMARY")["run"]
    assert "harness publish run --site site --from \"$SITE_URL\"" in \
        run_step(merge, r"^\s*harness publish")["run"]
    (pages,) = uses_steps(merge, "actions/upload-pages-artifact")
    assert pages["with"]["path"] == "site/"
    verdict = steps_of(merge)[-1]
    assert verdict["if"] == "always()"
    assert verdict["env"] == {"MERGE_STATUS": "${{ steps.merge.outputs.status }}",
                              "REPORT_STATUS": "${{ steps.report.outputs.status }}"}
    for merged, reported, code in (("0", "0", 0), ("0", "1", 1), ("1", "1", 1),
                                   ("0", "2", 2), ("2", "0", 2), ("", "", 2), ("0", "", 2)):
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", verdict["run"]],
                              env={"MERGE_STATUS": merged, "REPORT_STATUS": reported})
        assert proc.returncode == code, (merged, reported)
    assert merge["outputs"]["pages"] == "${{ steps.publish.outputs.pages }}"
    (deploy,) = uses_steps(nightly["jobs"]["deploy"], "actions/deploy-pages")
    assert nightly["jobs"]["deploy"]["environment"]["name"] == "github-pages"


@pytest.mark.parametrize("merged, reported, err, headline", [
    ("0", "0", "", ["No regression against the published run and no infrastructure failure"]),
    ("0", "1", "regressions since run r1: 2 cells, 5 cases (--fail-on regression)\n",
     ["**Regression** against the published run"]),
    ("1", "1", "error: run r2: infrastructure failures (not compatibility results): 3 crashed\n",
     ["**Infrastructure failures**"]),
    ("1", "1", "regressions since run r1: 1 cells, 1 cases (--fail-on regression)\n"
               "error: run r2: infrastructure failures (not compatibility results): 1 timeout\n",
     ["**Regression**", "**Infrastructure failures**"]),
    ("0", "1", "error: run r2: the run is incomplete: 4 planned cases have no record\n",
     ["**Incomplete run**"]),
    ("2", "2", "error: merge shards/x: not a shard's directory\n",
     ["**Bad input or infrastructure trouble** (harness merge: exit 2, harness report: exit 2)"]),
    ("", "", "", ["**Bad input or infrastructure trouble** (harness merge: exit not run"]),
])
def test_job_summary_tells_a_regression_from_infrastructure(nightly, tmp_path, merged,
                                                            reported, err, headline):
    step = run_step(nightly["jobs"]["merge"], r"GITHUB_STEP_SUMMARY")
    (tmp_path / "report.err").write_text(err)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "compat.md").write_text("# TF Hub compatibility\n")
    summary = tmp_path / "summary.md"
    env = {"PATH": os.environ["PATH"], "GITHUB_STEP_SUMMARY": str(summary), "RUN_ID": "r2",
           "MERGE_STATUS": merged, "REPORT_STATUS": reported, "CREATE_RESULT": "success",
           "CONSUME_RESULT": "failure"}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                           step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = summary.read_text()
    lines = text.splitlines()
    assert lines[0] == "## Nightly run r2"
    markers = ("No regression", "**Regression**", "**Infrastructure failures**",
               "**Incomplete run**", "**Bad input")
    assert [m for m in markers if m in text] == \
        [m for m in markers if any(h.startswith(m) for h in headline)]
    for h in headline:
        assert h in text
    assert "create jobs: success, consume jobs: failure" in text
    assert text.rstrip().endswith("# TF Hub compatibility")
    if err:
        assert err.splitlines()[0] in text


def test_harness_is_called_directly(nightly):
    """nox turns every failure into 1: the exit codes 1 (regression) and 2 (bad input)
    survive only when harness itself is the command."""
    for job in nightly["jobs"].values():
        for step in steps_of(job):
            assert not re.search(r"\bnox\b", step.get("run", ""))


@pytest.mark.parametrize("name", workflow_files())
def test_least_privilege(name):
    wf = workflow(name)
    assert wf["permissions"] == {"contents": "read"}
    for job_id, job in wf["jobs"].items():
        if name == "nightly.yml" and job_id == "deploy":
            assert job["permissions"] == {"pages": "write", "id-token": "write"}
        else:
            assert "permissions" not in job, f"{name}: jobs.{job_id} widens permissions"


@pytest.mark.parametrize("name", workflow_files())
def test_actions_pinned_to_a_commit(name):
    with open(os.path.join(WORKFLOWS, name)) as fh:
        lines = [ln for ln in fh.read().splitlines() if re.match(r"\s*(-\s+)?uses:", ln)]
    assert lines
    for line in lines:
        assert re.fullmatch(r"\s*(-\s+)?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+(\.\d+)*",
                            line), f"{name}: {line.strip()!r} is not pinned to a SHA # vX"
    # one version per action
    pins = {}
    for line in lines:
        action, sha = line.split("uses: ")[1].split("  #")[0].split("@")
        assert pins.setdefault(action, sha) == sha, f"{name}: {action} pinned twice"


@pytest.mark.parametrize("name", workflow_files())
def test_no_expression_in_run_scripts(name):
    for job_id, job in workflow(name)["jobs"].items():
        for i, step in enumerate(steps_of(job)):
            assert "${{" not in step.get("run", ""), \
                f"{name}: jobs.{job_id}.steps[{i}].run interpolates an expression"


def test_interpreters(nightly, plan):
    """3.7 from actions/setup-python on 22.04 (uv has no managed 3.7), the others through
    the harness's uv-managed downloads."""
    assert nightly["env"]["TFHUB_COMPAT_PYTHON_DOWNLOADS"] == "allow"
    for stage in ("create", "consume"):
        job = nightly["jobs"][stage]
        setups = uses_steps(job, "actions/setup-python")
        assert [s.get("if") for s in setups] == ["matrix.python == '3.7'", None]
        assert setups[0]["with"]["python-version"] == "3.7"
        for entry in plan[stage]["include"]:
            ev = rehearse.Evaluator({"matrix": entry})
            image = rehearse.interpolate(job["runs-on"], ev)
            assert image == ("ubuntu-22.04" if entry["python"] == "3.7" else "ubuntu-24.04")


def test_every_expression_evaluates(nightly, plan):
    """The rehearsal can evaluate every ${{ }} of the workflow (an unknown function or
    context would stop it)."""
    written = {"create": "{}", "consume": "{}", "matrix": plan["matrix"], "run_id": "r"}
    contexts = {"github": {"repository_owner": "o", "event": {"repository": {"name": "r"}}},
                "vars": {}, "inputs": {}, "secrets": {}, "env": {},
                "runner": {"os": "Linux", "temp": "/tmp"},
                "matrix": plan["create"]["include"][0],
                "needs": {j: {"result": "success", "outputs": written}
                          for j in nightly["jobs"]},
                "steps": {}, "strategy": {}, "job": {}}
    ev = rehearse.Evaluator(contexts, {"success": lambda: True, "failure": lambda: False,
                                       "hashFiles": lambda *p: "h"})
    with open(NIGHTLY) as fh:
        expressions = re.findall(r"\$\{\{(.*?)\}\}", fh.read())
    assert len(expressions) > 20
    for text in expressions:
        ev.eval(text)
    site = rehearse.interpolate(nightly["env"]["SITE_URL"], ev)
    assert site == "https://o.github.io/r/"


@pytest.mark.parametrize("text, contexts, expected", [
    ("inputs.matrix || 'matrices/versions.yaml'", {"inputs": {}}, "matrices/versions.yaml"),
    ("matrix.python == '3.7' && 'ubuntu-22.04' || 'ubuntu-24.04'",
     {"matrix": {"python": "3.11"}}, "ubuntu-24.04"),
    ("!cancelled() && needs.merge.outputs.pages == 'true'",
     {"needs": {"merge": {"outputs": {"pages": "true"}}}}, True),
    ("!cancelled() && needs.merge.outputs.pages == 'true'",
     {"needs": {"merge": {"outputs": {}}}}, False),
    ("fromJSON('{\"include\": [{\"env\": \"a\"}]}').include[0].env", {}, "a"),
    ("format('https://{0}.github.io/{1}/', 'o', 'r')", {}, "https://o.github.io/r/"),
    ("steps.merge.outputs.status == '0' || steps.merge.outputs.status == 1",
     {"steps": {"merge": {"outputs": {"status": "1"}}}}, True),
    ("needs.plan.result == 'SUCCESS'", {"needs": {"plan": {"result": "success"}}}, True),
])
def test_evaluator(text, contexts, expected):
    assert rehearse.Evaluator(contexts).eval(text) == expected


def test_evaluator_refuses_what_it_does_not_know():
    with pytest.raises(rehearse.RehearsalError, match="context 'secretz' is not emulated"):
        rehearse.Evaluator({}).eval("secretz.TOKEN")
    with pytest.raises(rehearse.RehearsalError, match=r"function nope\(\) is not emulated"):
        rehearse.Evaluator({}).eval("nope()")


def test_a_step_condition_without_a_status_function_means_success():
    ev = rehearse.Evaluator({"matrix": {"python": "3.7"}}, {"success": lambda: False})
    assert rehearse.condition("matrix.python == '3.7'", ev) is False
    assert rehearse.condition("always() && matrix.python == '3.7'", ev) is True
