//! Envoy's rate limit service API (`envoy.service.ratelimit.v3`), the
//! messages this filter sends and reads, encoded with prost. The same API is
//! served by envoyproxy/ratelimit and Limitador.

use prost::Message;

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

const CODE_OK: i32 = 1;
const CODE_OVER_LIMIT: i32 = 2;

/// One descriptor with the entries `plan` and `client`, in `domain`.
pub fn encode_request(domain: &str, plan: &str, client: &[u8], cost: u32) -> Vec<u8> {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "plan".to_owned(),
                    value: plan.to_owned(),
                },
                Entry {
                    key: "client".to_owned(),
                    value: descriptor_value(client),
                },
            ],
        }],
        hits_addend: cost,
    }
    .encode_to_vec()
}

/// A client key as a descriptor value (a protobuf string): bytes that are
/// not UTF-8 become `%XX`, and `%` becomes `%25`, so distinct keys stay
/// distinct.
pub fn descriptor_value(client: &[u8]) -> String {
    let mut out = String::with_capacity(client.len());
    for chunk in client.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Ok,
    OverLimit { retry_after_s: u64 },
}

/// The service's answer; `None` for an undecodable message or an unknown code.
pub fn decode_response(bytes: &[u8]) -> Option<Decision> {
    let resp = RateLimitResponse::decode(bytes).ok()?;
    match resp.overall_code {
        CODE_OK => Some(Decision::Ok),
        CODE_OVER_LIMIT => {
            let reset = resp
                .statuses
                .iter()
                .filter(|s| s.code == CODE_OVER_LIMIT)
                .filter_map(|s| s.duration_until_reset.as_ref())
                .map(|d| {
                    let secs = u64::try_from(d.seconds).unwrap_or(0);
                    secs + u64::from(d.nanos > 0)
                })
                .max()
                .unwrap_or(1);
            Some(Decision::OverLimit {
                retry_after_s: reset.max(1),
            })
        }
        _ => None,
    }
}
