//! `ServiceEntry` (networking.istio.io): services and their endpoints outside Kubernetes.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub location: Option<String>,
    pub resolution: Option<String>,
    pub endpoints: Vec<WorkloadEntry>,
    pub workload_selector: Option<ServiceWorkloadSelector>,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    pub number: Option<i64>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadEntry {
    pub address: Option<String>,
    pub ports: BTreeMap<String, i64>,
    pub labels: BTreeMap<String, String>,
    pub weight: Option<i64>,
    pub locality: Option<String>,
    pub network: Option<String>,
    pub service_account: Option<String>,
}

/// A ServiceEntry's `workloadSelector`: `labels` (a DestinationRule's selector says `matchLabels`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceWorkloadSelector {
    pub labels: BTreeMap<String, String>,
}
