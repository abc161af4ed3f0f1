//! `ShouldRateLimit` over limitador.
//!
//! Each descriptor of a request is checked and counted on its own (as in
//! Envoy's reference rate limit service): its entries become limitador's
//! variables (see [`crate::limits`]) and `check_rate_limited_and_update` adds the
//! descriptor's hits (its own `hits_addend` if set, else the request's, where
//! 0 means 1) to every counter of the limits that apply, unless one of them
//! would go over its `max_value`, in which case none is counted and the
//! descriptor is `OVER_LIMIT`. The overall code is `OVER_LIMIT` if any
//! descriptor is. A descriptor that no limit applies to is `OK` without a
//! `current_limit`.
//!
//! A descriptor's status reports the counter that decided it (the one over
//! its limit, else the one with the fewest hits left): `current_limit`
//! (`requests_per_unit` = `max_value`, `unit` from `seconds` when it is one
//! second, minute, hour, day or week, else `UNKNOWN`; `name` = the limit's
//! name), `limit_remaining` and `duration_until_reset` (the counter's TTL in
//! Redis; the whole window for a counter that does not exist yet).
//!
//! limitador's Redis storage checks and updates in separate round trips, so
//! calls are handled one at a time within a process: one service is exact,
//! whatever the number of Envoys calling it. Several services over one Redis
//! can overshoot a counter a little when their calls race for its last hits.
//!
//! A storage error (Redis down) answers gRPC `UNAVAILABLE`, so that the
//! caller's failure mode applies. Descriptor `limit` overrides and
//! `is_negative_hits` are ignored.
//!
//! Every call is printed on stdout as one JSON line:
//! `{"domain":"plans","descriptors":[[{"plan":"free"},{"client":"alice"}]],
//! "hits":[1],"overall":"OK","statuses":[{"code":"OK","limit":"free",
//! "remaining":4,"reset_ms":987}]}` or, on error,
//! `{"domain":..,"descriptors":..,"error":".."}`.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf;
use limitador::counter::Counter;
use limitador::limit::Namespace;
use limitador::AsyncRateLimiter;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

pub struct Rls {
    limiter: Arc<AsyncRateLimiter>,
    /// One call at a time (see the module docs).
    serial: tokio::sync::Mutex<()>,
}

impl Rls {
    pub fn new(limiter: Arc<AsyncRateLimiter>) -> Self {
        Self {
            limiter,
            serial: tokio::sync::Mutex::new(()),
        }
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        let namespace = Namespace::from(req.domain.as_str());
        let mut log = json!({
            "domain": req.domain,
            "descriptors": req.descriptors.iter().map(entries_json).collect::<Vec<_>>(),
        });
        let serial = self.serial.lock().await;
        let mut statuses = Vec::with_capacity(req.descriptors.len());
        let mut hits_log = Vec::with_capacity(req.descriptors.len());
        for descriptor in &req.descriptors {
            let hits = hits(descriptor, req.hits_addend);
            hits_log.push(hits);
            match self.check(&namespace, descriptor, hits).await {
                Ok(status) => statuses.push(status),
                Err(e) => {
                    drop(serial);
                    log["error"] = Value::from(e.clone());
                    println!("{log}");
                    return Err(Status::unavailable(format!("rate limit storage: {e}")));
                }
            }
        }
        drop(serial);
        let over = statuses
            .iter()
            .any(|s| s.code == i32::from(Code::OverLimit));
        let overall = if over { Code::OverLimit } else { Code::Ok };
        log["hits"] = json!(hits_log);
        log["overall"] = Value::from(overall.as_str_name());
        log["statuses"] = statuses.iter().map(status_json).collect();
        println!("{log}");
        Ok(Response::new(RateLimitResponse {
            overall_code: overall.into(),
            statuses,
            ..Default::default()
        }))
    }
}

impl Rls {
    async fn check(
        &self,
        namespace: &Namespace,
        descriptor: &RateLimitDescriptor,
        hits: u64,
    ) -> Result<DescriptorStatus, String> {
        let values = crate::limits::variables(
            descriptor
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str())),
        );
        let hits = i64::try_from(hits).unwrap_or(i64::MAX);
        let result = self
            .limiter
            .check_rate_limited_and_update(namespace, &values, hits, true)
            .await
            .map_err(|e| e.to_string())?;
        let code = if result.limited {
            Code::OverLimit
        } else {
            Code::Ok
        };
        // limitador sets each counter's `remaining` to max - (value + hits):
        // negative for a counter these hits would take over its limit. The
        // counter that decided: the first such one, else the fewest left.
        let remaining = |c: &Counter| c.remaining().unwrap_or(c.max_value() - hits);
        let deciding = if result.limited {
            result.counters.iter().find(|c| remaining(c) < 0)
        } else {
            result.counters.iter().min_by_key(|c| remaining(c))
        };
        Ok(match deciding {
            None => DescriptorStatus {
                code: code.into(),
                ..Default::default()
            },
            Some(counter) => DescriptorStatus {
                code: code.into(),
                current_limit: Some(current_limit(counter)),
                // Left before these hits: what is left now when they were
                // refused, else after them.
                limit_remaining: clamp_u32(if result.limited {
                    remaining(counter) + hits
                } else {
                    remaining(counter)
                }),
                duration_until_reset: Some(duration(
                    counter
                        .expires_in()
                        .unwrap_or(Duration::from_secs(counter.seconds())),
                )),
                ..Default::default()
            },
        })
    }
}

/// The descriptor's hits: its own `hits_addend` if set, else the request's;
/// 0 means 1.
fn hits(descriptor: &RateLimitDescriptor, request_hits: u32) -> u64 {
    let hits = descriptor
        .hits_addend
        .as_ref()
        .map_or(u64::from(request_hits), |h| h.value);
    hits.max(1)
}

fn current_limit(counter: &Counter) -> RateLimit {
    let limit = counter.limit();
    let unit = match limit.seconds() {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86_400 => Unit::Day,
        604_800 => Unit::Week,
        _ => Unit::Unknown,
    };
    RateLimit {
        name: limit.name().unwrap_or_default().to_owned(),
        requests_per_unit: clamp_u32(limit.max_value()),
        unit: unit.into(),
    }
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn duration(d: Duration) -> protobuf::Duration {
    protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `[{"plan":"free"},{"client":"alice"}]`: the entries in order.
fn entries_json(descriptor: &RateLimitDescriptor) -> Value {
    descriptor
        .entries
        .iter()
        .map(|e| json!({ e.key.as_str(): e.value }))
        .collect()
}

fn status_json(status: &DescriptorStatus) -> Value {
    let code = Code::try_from(status.code).unwrap_or(Code::Unknown);
    let mut v = json!({ "code": code.as_str_name() });
    if let Some(limit) = &status.current_limit {
        v["limit"] = Value::from(limit.name.as_str());
        v["remaining"] = Value::from(status.limit_remaining);
    }
    if let Some(d) = &status.duration_until_reset {
        v["reset_ms"] = Value::from(d.seconds * 1000 + i64::from(d.nanos / 1_000_000));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;

    fn descriptor(entries: &[(&str, &str)], hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
            hits_addend: hits.map(|value| protobuf::UInt64Value { value }),
            ..Default::default()
        }
    }

    #[test]
    fn hits_addend_zero_means_one_and_descriptor_overrides() {
        let d = descriptor(&[("plan", "free")], None);
        assert_eq!(hits(&d, 0), 1);
        assert_eq!(hits(&d, 3), 3);
        assert_eq!(hits(&descriptor(&[], Some(7)), 3), 7);
        assert_eq!(hits(&descriptor(&[], Some(0)), 3), 1);
    }

    #[test]
    fn units_and_names() {
        let limits = crate::limits::parse(
            "[{name: a, domain: d, max_value: 5, seconds: 60, per: [k]},\
              {domain: d, max_value: 5000000000, seconds: 7}]",
        )
        .unwrap();
        let vars = crate::limits::variables([("k", "v")]);
        let minute = Counter::new(limits[0].clone(), vars.clone());
        let rl = current_limit(&minute);
        assert_eq!((rl.name.as_str(), rl.requests_per_unit), ("a", 5));
        assert_eq!(rl.unit, i32::from(Unit::Minute));
        let odd = Counter::new(limits[1].clone(), vars);
        let rl = current_limit(&odd);
        assert_eq!(rl.name, "d: 5000000000 per 7s");
        assert_eq!(
            (rl.requests_per_unit, rl.unit),
            (u32::MAX, i32::from(Unit::Unknown))
        );
    }

    #[test]
    fn log_lines() {
        let d = descriptor(&[("plan", "free"), ("client", "alice")], None);
        assert_eq!(
            entries_json(&d).to_string(),
            r#"[{"plan":"free"},{"client":"alice"}]"#
        );
        let status = DescriptorStatus {
            code: Code::OverLimit.into(),
            current_limit: Some(RateLimit {
                name: "free".into(),
                requests_per_unit: 5,
                unit: Unit::Second.into(),
            }),
            limit_remaining: 0,
            duration_until_reset: Some(duration(Duration::from_millis(1500))),
            ..Default::default()
        };
        assert_eq!(
            status_json(&status),
            json!({"code": "OVER_LIMIT", "limit": "free", "remaining": 0, "reset_ms": 1500})
        );
    }
}
