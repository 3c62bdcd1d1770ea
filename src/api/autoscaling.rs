//! HorizontalPodAutoscalers: autoscaling/v2 is stored and preferred; autoscaling/v1
//! is served from the same objects, converting its one metric
//! (`targetCPUUtilizationPercentage`) to and from a v2 CPU `Resource` metric.

use super::meta::child_mut;
use serde_json::{Map, Value, json};

/// Upstream's target when an HPA names no metric: 80% average CPU utilization.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn cpu_metric(utilization: &Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": utilization}}})
}

/// The averageUtilization of a CPU `Resource` metric in `metrics` (a v2 list), if any.
fn cpu_utilization<'a>(metrics: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let resource = m.get("resource")?;
        (m.get("type")? == "Resource" && resource.get("name")? == "cpu")
            .then(|| resource.get(field)?.get("averageUtilization"))
            .flatten()
    })
}

/// An autoscaling/v1 object in its stored autoscaling/v2 form.
pub fn v1_to_v2(mut object: Value) -> Value {
    object["apiVersion"] = json!("autoscaling/v2");
    let Some(root) = object.as_object_mut() else {
        return object;
    };
    if let Some(Value::Object(spec)) = root.get_mut("spec")
        && let Some(target) = spec.remove("targetCPUUtilizationPercentage")
    {
        spec.insert("metrics".into(), json!([cpu_metric(&target)]));
    }
    if let Some(Value::Object(status)) = root.get_mut("status") {
        if let Some(current) = status.remove("currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": current}}}]),
            );
        }
        // v2's Go type omits a zero currentReplicas and always writes currentMetrics.
        if status.get("currentReplicas") == Some(&json!(0)) {
            status.remove("currentReplicas");
        }
        status.entry("currentMetrics").or_insert(Value::Null);
    }
    object
}

/// A stored autoscaling/v2 object as autoscaling/v1 shows it.
pub fn v2_to_v1(mut object: Value) -> Value {
    object["apiVersion"] = json!("autoscaling/v1");
    let Some(root) = object.as_object_mut() else {
        return object;
    };
    if let Some(Value::Object(spec)) = root.get_mut("spec") {
        let target = cpu_utilization(spec.get("metrics"), "target").cloned();
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(target) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), target);
        }
    }
    if let Some(Value::Object(status)) = root.get_mut("status") {
        let current = cpu_utilization(status.get("currentMetrics"), "current").cloned();
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(current) = current {
            status.insert("currentCPUUtilizationPercentage".into(), current);
        }
        // v1's Go type always writes currentReplicas, which v2 omits when zero.
        status.entry("currentReplicas").or_insert(json!(0));
    }
    object
}

/// Upstream's v2 defaults: at least one replica, CPU at 80% when no metric is named.
pub fn default_hpa(hpa: &mut Value) {
    let Some(root) = hpa.as_object_mut() else {
        return;
    };
    let spec: &mut Map<String, Value> = child_mut(root, "spec");
    spec.entry("minReplicas").or_insert(json!(1));
    let empty = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if empty {
        spec.insert(
            "metrics".into(),
            json!([cpu_metric(&json!(DEFAULT_CPU_UTILIZATION))]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_target_round_trips() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "spec": {"maxReplicas": 5, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 20}});
        let v2 = v1_to_v2(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            20
        );
        assert_eq!(v2_to_v1(v2), v1);
    }

    /// A just-created HPA's status, as each version's Go type writes it
    /// (kubernetes/api autoscaling/v1/types.go, autoscaling/v2/types.go).
    #[test]
    fn zero_status_in_each_version() {
        let v1 = json!({"status": {"currentReplicas": 0, "desiredReplicas": 0}});
        let v2 = v1_to_v2(v1);
        assert_eq!(
            v2["status"],
            json!({"desiredReplicas": 0, "currentMetrics": null})
        );
        assert_eq!(
            v2_to_v1(v2)["status"],
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
    }

    #[test]
    fn defaults_cpu_metric() {
        let mut hpa = json!({"spec": {"maxReplicas": 3}});
        default_hpa(&mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
    }
}
