"""The monitoring stack of the monitor (Prometheus, its rules, Grafana), checked statically.

There is no Docker engine here: promtool (Debian's `prometheus` package) checks the
Prometheus config and the alert rules and runs their unit tests; the Grafana dashboard is
checked against the metrics contract (`streams.metrics.METRIC_NAMES`); and every file a
compose service mounts or is pointed at must exist where the mount puts it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from streams.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "watchkeeper.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "watchkeeper.yml"
INSTALL_PROMTOOL = "apt-get install -y prometheus"
# scrape job -> compose service (job names: the metrics contract)
JOBS = {"watchkeeper-worker": "worker", "watchkeeper-notifier": "notifier"}
RULES = {
    "WatchkeeperWorkerDown",
    "WatchkeeperNotifierDown",
    "WatchkeeperConsumerLagGrowing",
    "WatchkeeperDeadLetterRate",
    "WatchkeeperRedisDown",
}
ALLOWED_METRICS = METRIC_NAMES | {"up"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _yaml(ROOT / "docker-compose.yml")["services"]
    return services


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root; missing promtool is a failure, not a skip."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(f"promtool not found: install it with `{INSTALL_PROMTOOL}` (Debian)")
    return subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


# --- PromQL: which metrics does an expression read? ---------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAMES = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<metric>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)


def _metric_names(expr: str) -> set[str]:
    """Metric names an expression selects, histogram series reduced to their base name.

    Strings, label matchers, ranges and grouping clauses go first, so that what is left
    is functions (a name before a parenthesis), keywords, numbers and metric names.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _NAMES.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def _variable_expr(query: str) -> str:
    """The PromQL inside a Grafana variable query (only label_values(...) is used here)."""
    match = _LABEL_VALUES.match(query)
    assert match and match["metric"], f"unsupported variable query: {query!r}"
    return match["metric"]


def test_metric_names_are_read_from_promql_not_from_labels_or_functions() -> None:
    expr = (
        'sum by (kind, le) (rate(watchkeeper_batch_duration_seconds_bucket{step="join",'
        ' kind=~"up|down"}[5m] offset 1h)) / on () group_left () up > 1e3'
        " and ignoring(reason) time() - watchkeeper_pages_total unless other_metric:sum"
    )
    assert _metric_names(expr) == {
        "watchkeeper_batch_duration_seconds",
        "up",
        "watchkeeper_pages_total",
        "other_metric:sum",
    }
    assert _variable_expr("label_values(watchkeeper_redis_up{job='x'}, instance)") == (
        "watchkeeper_redis_up{job='x'}"
    )


# --- Prometheus: config, rules, rule unit tests ------------------------------------------


def test_promtool_accepts_the_prometheus_config() -> None:
    """Also checks the rule files the config names (rules.yml)."""
    _assert_ok(_promtool("check", "config", "deploy/prometheus/prometheus.yml"))


def test_promtool_accepts_the_alert_rules() -> None:
    _assert_ok(_promtool("check", "rules", "deploy/prometheus/rules.yml"))


def test_every_alert_rule_passes_its_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", "deploy/prometheus/rules_test.yml")
    _assert_ok(result)
    assert "SUCCESS" in result.stdout + result.stderr


def _rules() -> list[dict[str, Any]]:
    return [
        rule for group in _yaml(PROMETHEUS_DIR / "rules.yml")["groups"] for rule in group["rules"]
    ]


def test_alert_rules_are_labelled_and_documented() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} == RULES
    anchors = set()
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip()
        url = annotations["runbook_url"]
        assert url == f"README.md#{rule['alert'].lower()}", url  # a heading per rule
        anchors.add(url)
        assert _metric_names(rule["expr"]) <= ALLOWED_METRICS, rule["alert"]
    assert len(anchors) == len(rules)


def test_each_rule_has_a_firing_and_a_quiet_unit_test() -> None:
    """promtool only checks the cases written down: make sure both kinds are there."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in _yaml(PROMETHEUS_DIR / "rules_test.yml")["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == RULES and quiet == RULES, (RULES - fired, RULES - quiet)


def test_scrape_jobs_find_every_replica_on_the_services_metrics_port() -> None:
    """dns_sd on the service name (one A record per replica) at WATCHKEEPER_METRICS_PORT."""
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = _services()
    for job_name, service in JOBS.items():
        (sd,) = jobs[job_name]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["type"] == "A"
        port = int(services[service]["environment"]["WATCHKEEPER_METRICS_PORT"])
        assert sd["port"] == port
        assert services[service]["deploy"]["replicas"] >= 1
    rules = "\n".join(rule["expr"] for rule in _rules())
    for job_name in JOBS:
        assert f'up{{job="{job_name}"}} == 0' in rules


# --- compose: every mounted or referenced file exists -------------------------------------


def _mounts(service: str) -> Iterator[tuple[Path, PurePosixPath]]:
    """(host path, container path) of the service's bind mounts."""
    for volume in _services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield ROOT / source, PurePosixPath(target)


def _host_path(service: str, container_path: str) -> Path:
    """Where a path inside the container comes from on the host, through a bind mount."""
    inside = PurePosixPath(container_path)
    for source, target in _mounts(service):
        if inside == target or target in inside.parents:
            return source.joinpath(*inside.relative_to(target).parts)
    raise AssertionError(f"{service}: nothing mounts {container_path}")


def test_bind_mounts_of_prometheus_and_grafana_exist() -> None:
    for service in ("prometheus", "grafana"):
        mounts = list(_mounts(service))
        assert mounts, service
        for source, _ in mounts:
            assert source.exists(), f"{service} mounts {source}, which does not exist"


def test_prometheus_reads_the_checked_config_and_rules() -> None:
    args = _services()["prometheus"]["command"]
    (config_flag,) = [a for a in args if a.startswith("--config.file=")]
    config_path = config_flag.split("=", 1)[1]
    assert _host_path("prometheus", config_path) == PROMETHEUS_DIR / "prometheus.yml"
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    for rule_file in config["rule_files"]:
        inside = PurePosixPath(config_path).parent / rule_file
        assert _host_path("prometheus", str(inside)) == PROMETHEUS_DIR / "rules.yml"


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    grafana = _services()["grafana"]
    assert _host_path("grafana", "/etc/grafana/provisioning/datasources") == (DATASOURCES.parent)
    assert _host_path("grafana", "/etc/grafana/provisioning/dashboards") == (
        DASHBOARD_PROVIDERS.parent
    )
    (provider,) = _yaml(DASHBOARD_PROVIDERS)["providers"]
    assert _host_path("grafana", provider["options"]["path"]) == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path("grafana", home) == DASHBOARD
    (datasource,) = _yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    # the URL names the compose service and the port Prometheus listens on
    prometheus = _services()["prometheus"]
    container_port = prometheus["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{container_port}"


# --- the Grafana dashboard ---------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _panel_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def _variable_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def test_dashboard_reads_only_contract_metrics_and_shows_all_of_them() -> None:
    dashboard = _dashboard()
    shown: set[str] = set()
    for title, expr in _panel_exprs(dashboard):
        names = _metric_names(expr)
        assert names, (title, expr)
        assert names <= ALLOWED_METRICS, (title, names - ALLOWED_METRICS)
        shown |= names
    for query in _variable_queries(dashboard):
        assert _metric_names(_variable_expr(query)) <= ALLOWED_METRICS, query
    assert shown >= ALLOWED_METRICS, ALLOWED_METRICS - shown


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every query, Grafana's interval variables replaced, is valid PromQL to promtool."""
    dashboard = _dashboard()
    exprs = [expr for _, expr in _panel_exprs(dashboard)]
    exprs += [_variable_expr(query) for query in _variable_queries(dashboard)]
    rules = [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__\w+", "5m", expr)}
        for i, expr in enumerate(exprs)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _assert_ok(_promtool("check", "rules", str(path)))


def test_dashboard_panels_have_unique_ids_and_the_provisioned_datasource() -> None:
    dashboard = _dashboard()
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), ids
    (datasource,) = _yaml(DATASOURCES)["datasources"]
    uids = set()
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        uids.add(panel["datasource"]["uid"])
        uids |= {target["datasource"]["uid"] for target in panel["targets"]}
    uids |= {variable["datasource"]["uid"] for variable in dashboard["templating"]["list"]}
    assert uids == {datasource["uid"]}


def test_dashboard_filters_models_by_the_model_id_variable() -> None:
    dashboard = _dashboard()
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model_id"]
    assert variable["type"] == "query" and variable["multi"] and variable["includeAll"]
    match = _LABEL_VALUES.match(variable["query"]["query"])
    assert match and match["label"] == "model_id"
    per_model = [
        expr
        for _, expr in _panel_exprs(dashboard)
        if _metric_names(expr) & {n for n in METRIC_NAMES if n.startswith("watchkeeper_model_")}
    ]
    assert per_model and all('model_id=~"$model_id"' in expr for expr in per_model)


def test_dashboard_panels_do_not_overlap() -> None:
    """Grafana would push overlapping panels around: the layout must be the one written."""
    cells: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
