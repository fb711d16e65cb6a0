//! A profiling tool's profile as OTLP's profiles signal: the
//! `opentelemetry.proto.profiles.v1development` messages of the `opentelemetry-proto`
//! crate, the revision the Collector v0.161 speaks (its OTLP receiver takes them at
//! `/v1development/profiles` when started with `--feature-gates=
//! service.profilesSupport` and a `profiles` pipeline). The profile is sent once, at
//! the end of the tool, by [`send`]; what the collector refuses is said with its
//! answer, so that the caller can keep the profile as a pprof file instead.
//!
//! The conversion keeps what the pprof file holds: OTLP gives a profile one sample
//! type, so each of the pprof profile's sample types (`samples`/`count` and
//! `cpu`/`nanoseconds` for `profile`) becomes a profile of its own over the one
//! shared dictionary; a sample's stack is a `Stack` of `Location`s (innermost
//! first, inlined frames as the location's lines, innermost first, as in pprof);
//! its labels are attributes of the same keys. Every dictionary table opens with
//! its zero value, as the protocol requires.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Location, Mapping, Profile, ProfilesDictionary,
    ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
};
use prost::Message;
use runtime::pprof::{Frame, LabelValue};
use thiserror::Error;

use crate::otlp::{OtlpConfig, resource_message, scope};
use crate::resource::Resource;

/// Why the collector did not take the profile.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("POST {url} answered HTTP {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("POST {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("POST {url}: the collector rejected {rejected} profiles: {message}")]
    Rejected {
        url: String,
        rejected: i64,
        message: String,
    },
}

/// The request carrying `profile`, taken of the process `resource` describes.
pub fn request(
    profile: &runtime::pprof::Profile,
    resource: &Resource,
) -> ExportProfilesServiceRequest {
    let mut d = Dictionary::new();
    let types = profile.sample_types();
    let ((period_type, period_unit), period) = profile.period();
    let (time, duration) = profile.time_nanos();
    let period_type = d.value_type(period_type, period_unit);
    let mut profiles: Vec<Profile> = types
        .iter()
        .map(|(t, u)| Profile {
            sample_type: Some(d.value_type(t, u)),
            time_unix_nano: u64::try_from(time).unwrap_or(0),
            duration_nano: u64::try_from(duration).unwrap_or(0),
            period_type: Some(period_type),
            period,
            ..Profile::default()
        })
        .collect();
    for s in profile.samples() {
        let stack_index = d.stack(&s.stack);
        let attribute_indices: Vec<i32> = s.labels.iter().map(|(k, v)| d.attribute(k, v)).collect();
        for (p, v) in profiles.iter_mut().zip(s.values) {
            p.samples.push(Sample {
                stack_index,
                attribute_indices: attribute_indices.clone(),
                values: vec![*v],
                ..Sample::default()
            });
        }
    }
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(resource_message(Some(resource))),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(scope()),
                profiles,
                ..ScopeProfiles::default()
            }],
            ..ResourceProfiles::default()
        }],
        dictionary: Some(d.table),
    }
}

/// Sends `req` to the configured profiles endpoint once, within `timeout`.
pub fn send(
    config: &OtlpConfig,
    req: &ExportProfilesServiceRequest,
    timeout: Duration,
) -> Result<(), SendError> {
    let url = &config.profiles_url;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut post = agent
        .post(url)
        .header("Content-Type", "application/x-protobuf");
    for (k, v) in &config.headers {
        post = post.header(k.as_str(), v.as_str());
    }
    let mut answer = post
        .send(&req.encode_to_vec()[..])
        .map_err(|e| SendError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let status = answer.status().as_u16();
    let body = answer.body_mut().read_to_vec().unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(SendError::Refused {
            url: url.clone(),
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    // A partial success names the profiles the collector dropped all the same.
    let partial = ExportProfilesServiceResponse::decode(&body[..])
        .ok()
        .and_then(|r| r.partial_success)
        .filter(|p| p.rejected_profiles > 0);
    match partial {
        Some(p) => Err(SendError::Rejected {
            url: url.clone(),
            rejected: p.rejected_profiles,
            message: p.error_message,
        }),
        None => Ok(()),
    }
}

/// The shared tables, each entry once, each table opening with its zero value.
struct Dictionary {
    table: ProfilesDictionary,
    strings: HashMap<String, i32>,
    functions: HashMap<(String, String), i32>,
    locations: HashMap<u64, i32>,
    stacks: HashMap<Vec<i32>, i32>,
    attributes: HashMap<(String, String), i32>,
}

impl Dictionary {
    fn new() -> Dictionary {
        let mut d = Dictionary {
            table: ProfilesDictionary {
                mapping_table: vec![Mapping::default()],
                location_table: vec![Location::default()],
                function_table: vec![Function::default()],
                link_table: vec![Default::default()],
                attribute_table: vec![KeyValueAndUnit::default()],
                stack_table: vec![Stack::default()],
                string_table: Vec::new(),
            },
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
            attributes: HashMap::new(),
        };
        d.string("");
        d
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = index(self.table.string_table.len());
        self.table.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, t: &str, unit: &str) -> ValueType {
        ValueType {
            type_strindex: self.string(t),
            unit_strindex: self.string(unit),
        }
    }

    fn function(&mut self, f: &Frame) -> i32 {
        let key = (f.function.clone(), f.file.clone());
        if let Some(i) = self.functions.get(&key) {
            return *i;
        }
        let name = self.string(&f.function);
        let filename = self.string(&f.file);
        let i = index(self.table.function_table.len());
        self.table.function_table.push(Function {
            name_strindex: name,
            system_name_strindex: name,
            filename_strindex: filename,
            start_line: 0,
        });
        self.functions.insert(key, i);
        i
    }

    /// A program counter's location; its frames are the same wherever it is met.
    fn location(&mut self, pc: u64, frames: &[Frame]) -> i32 {
        if let Some(i) = self.locations.get(&pc) {
            return *i;
        }
        let lines = frames
            .iter()
            .map(|f| Line {
                function_index: self.function(f),
                line: f.line,
                column: 0,
            })
            .collect();
        let i = index(self.table.location_table.len());
        self.table.location_table.push(Location {
            address: pc,
            lines,
            ..Location::default()
        });
        self.locations.insert(pc, i);
        i
    }

    fn stack(&mut self, stack: &[(u64, Vec<Frame>)]) -> i32 {
        let locations: Vec<i32> = stack
            .iter()
            .map(|(pc, frames)| self.location(*pc, frames))
            .collect();
        if let Some(i) = self.stacks.get(&locations) {
            return *i;
        }
        let i = index(self.table.stack_table.len());
        self.table.stack_table.push(Stack {
            location_indices: locations.clone(),
        });
        self.stacks.insert(locations, i);
        i
    }

    fn attribute(&mut self, key: &str, v: &LabelValue) -> i32 {
        let (text, value) = match v {
            LabelValue::Str(s) => (format!("s{s}"), any_value::Value::StringValue(s.clone())),
            LabelValue::Num(n) => (format!("n{n}"), any_value::Value::IntValue(*n)),
        };
        let id = (key.to_string(), text);
        if let Some(i) = self.attributes.get(&id) {
            return *i;
        }
        let key_strindex = self.string(key);
        let i = index(self.table.attribute_table.len());
        self.table.attribute_table.push(KeyValueAndUnit {
            key_strindex,
            value: Some(AnyValue { value: Some(value) }),
            unit_strindex: 0,
        });
        self.attributes.insert(id, i);
        i
    }
}

/// A table's next index: the tables of one profile stay far below `i32::MAX`
/// entries (the samples of a profile are bounded by its kernel map).
fn index(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::AttrValue;

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.into(),
            file: "/src/main.go".into(),
            line: 7,
        }
    }

    /// The function names of a sample's stack, innermost first, inlined frames
    /// included, read back through the dictionary.
    fn names(d: &ProfilesDictionary, s: &Sample) -> Vec<String> {
        d.stack_table[s.stack_index as usize]
            .location_indices
            .iter()
            .flat_map(|l| &d.location_table[*l as usize].lines)
            .map(|l| {
                let f = &d.function_table[l.function_index as usize];
                d.string_table[f.name_strindex as usize].clone()
            })
            .collect()
    }

    #[test]
    fn each_sample_type_is_a_profile_over_one_dictionary() {
        let mut p = runtime::pprof::Profile::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_101_010,
            1_000,
            2_000,
        );
        let inlined = (0x20, vec![frame("main.leaf"), frame("main.caller")]);
        p.add(
            &[inlined.clone(), (0x30, vec![frame("main.main")])],
            &[3, 30],
            &[("goroutine", LabelValue::Num(1))],
        );
        p.add(
            &[inlined, (0x30, vec![frame("main.main")])],
            &[2, 20],
            &[("goroutine", LabelValue::Num(7))],
        );
        let resource = Resource {
            attributes: vec![("service.name".into(), AttrValue::Str("shop".into()))],
        };
        let req = request(&p, &resource);
        let d = req.dictionary.as_ref().unwrap();
        // Every table opens with its zero value.
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.stack_table[0], Stack::default());
        assert_eq!(d.location_table[0], Location::default());
        assert_eq!(d.function_table[0], Function::default());
        assert_eq!(d.attribute_table[0], KeyValueAndUnit::default());
        // The same stack is one entry; its locations carry the inlined frames.
        assert_eq!(d.stack_table.len(), 2);
        assert_eq!(d.location_table.len(), 3);
        let profiles = &req.resource_profiles[0].scope_profiles[0].profiles;
        let text = |i: i32| d.string_table[i as usize].as_str();
        let types: Vec<(&str, &str)> = profiles
            .iter()
            .map(|p| {
                let t = p.sample_type.unwrap();
                (text(t.type_strindex), text(t.unit_strindex))
            })
            .collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        let values: Vec<Vec<i64>> = profiles
            .iter()
            .map(|p| p.samples.iter().flat_map(|s| s.values.clone()).collect())
            .collect();
        assert_eq!(values, [vec![3, 2], vec![30, 20]]);
        assert_eq!(
            names(d, &profiles[0].samples[1]),
            ["main.leaf", "main.caller", "main.main"]
        );
        let goroutine = |s: &Sample| {
            let a = &d.attribute_table[s.attribute_indices[0] as usize];
            (
                text(a.key_strindex),
                a.value.clone().unwrap().value.unwrap(),
            )
        };
        assert_eq!(
            goroutine(&profiles[1].samples[1]),
            ("goroutine", any_value::Value::IntValue(7))
        );
        assert_eq!(profiles[0].period, 10_101_010);
        assert_eq!(
            (profiles[0].time_unix_nano, profiles[0].duration_nano),
            (1_000, 2_000)
        );
        let attrs = &req.resource_profiles[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes;
        assert_eq!(attrs[0].key, "service.name");
    }
}
