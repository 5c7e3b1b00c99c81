"""Switching single alerts off by name (monitoring.prometheusRule.disabledAlerts)."""
from conftest import render, render_error

ON = {"monitoring.prometheusRule.enabled": True}


def alerts(docs):
    return [r["alert"] for d in docs.of("PrometheusRule") for g in d["spec"]["groups"]
            for r in g["rules"] if "alert" in r]


def test_named_alerts_are_left_out_and_the_rest_kept():
    every = alerts(render(set_values=ON))
    assert every.count("CeleryQueueBacklogHigh") == 2 and "CeleryBeatMissing" in every
    kept = alerts(render(set_values={**ON, "monitoring.prometheusRule.disabledAlerts":
                                     ["CeleryQueueBacklogHigh", "CeleryBeatMissing"]}))
    assert "CeleryQueueBacklogHigh" not in kept and "CeleryBeatMissing" not in kept
    assert sorted(kept) == sorted(a for a in every if a not in ("CeleryQueueBacklogHigh", "CeleryBeatMissing"))


def test_recording_rules_stay():
    docs = render(set_values={**ON, "monitoring.prometheusRule.disabledAlerts": ["CeleryQueueBacklogHigh"]})
    records = [r["record"] for d in docs.of("PrometheusRule") for g in d["spec"]["groups"]
               for r in g["rules"] if "record" in r]
    assert records == [r["record"] for d in render(set_values=ON).of("PrometheusRule")
                       for g in d["spec"]["groups"] for r in g["rules"] if "record" in r]


def test_an_unknown_alert_name_is_refused_naming_the_value():
    err = render_error(set_values={**ON, "monitoring.prometheusRule.disabledAlerts": ["CeleryQueueBacklogHihg"]})
    assert "monitoring.prometheusRule.disabledAlerts" in err and "CeleryQueueBacklogHihg" in err


def test_the_exporter_absence_alerts_go_with_the_exporter():
    """absent() alerts on the exporter's series would fire forever without its pod: left out
    when it is off (by hand, or on SQS), kept otherwise."""
    gone = {"CeleryExporterDown", "CeleryStackMetricsDown"}
    every = alerts(render(set_values=ON))
    assert gone <= set(every)
    sqs = {"broker.type": "sqs", "broker.sqs.region": "eu-west-1", "broker.sqs.accountId": "123456789012",
           "secrets.rateLimitRedisUrl": "redis://ratelimit:6379/0"}
    for values in ({"exporter.enabled": False}, sqs):
        kept = alerts(render(set_values={**ON, **values}))
        assert sorted(kept) == sorted(a for a in every if a not in gone), values
