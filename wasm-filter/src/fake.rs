//! An in-memory [`Host`] for native unit tests: properties, request headers, counters and
//! logs in plain maps, with switches to make host calls fail.
#![allow(dead_code)] // helpers used by some test modules only

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::host::{Host, HostError, Level};

#[derive(Debug, Default)]
pub struct FakeHost {
    properties: RefCell<HashMap<String, Vec<u8>>>,
    failing_properties: RefCell<HashSet<String>>,
    property_reads: RefCell<HashMap<String, usize>>,
    /// Request headers in order (name lower case, value bytes).
    pub headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub fail_header_writes: RefCell<bool>,
    pub fail_header_reads: RefCell<bool>,
    pub local_reply: RefCell<Option<(u32, Vec<u8>)>>,
    pub decision_state: RefCell<Option<String>>,
    pub closed: RefCell<bool>,
    counter_names: RefCell<Vec<String>>,
    /// Every host call made, by method name (`log` included), in order.
    calls: RefCell<Vec<String>>,
    counts: RefCell<BTreeMap<String, u64>>,
    logs: RefCell<Vec<(Level, String)>>,
}

fn key(path: &[&str]) -> String {
    path.join(".")
}

fn err(call: &'static str) -> HostError {
    HostError {
        call,
        status: "InternalFailure".into(),
    }
}

impl FakeHost {
    pub fn set_property(&self, path: &[&str], value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(key(path), value.to_vec());
    }
    pub fn fail_property(&self, path: &[&str]) {
        self.failing_properties.borrow_mut().insert(key(path));
    }
    pub fn property_reads(&self, path: &[&str]) -> usize {
        self.property_reads
            .borrow()
            .get(&key(path))
            .copied()
            .unwrap_or(0)
    }
    pub fn add_header(&self, name: &str, value: &str) {
        self.headers
            .borrow_mut()
            .push((name.to_owned(), value.as_bytes().to_vec()));
    }
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
    /// Counter value by name (0 when never incremented).
    pub fn count(&self, name: &str) -> u64 {
        self.counts.borrow().get(name).copied().unwrap_or(0)
    }
    /// Every counter that is non-zero.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.borrow().clone()
    }
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }
    pub fn defined_counters(&self) -> Vec<String> {
        self.counter_names.borrow().clone()
    }
    /// The host calls made so far (each one is a proxy-wasm call in Envoy).
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
    /// Forgets the calls made so far (e.g. those of `on_configure`).
    pub fn reset_calls(&self) {
        self.calls.borrow_mut().clear();
    }
    fn call(&self, name: impl Into<String>) {
        self.calls.borrow_mut().push(name.into());
    }
}

impl Host for FakeHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.call(format!("property {}", key(path)));
        let k = key(path);
        *self
            .property_reads
            .borrow_mut()
            .entry(k.clone())
            .or_default() += 1;
        if self.failing_properties.borrow().contains(&k) {
            return Err(err("get_property"));
        }
        Ok(self.properties.borrow().get(&k).cloned())
    }
    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.call(format!("request_header {name}"));
        if *self.fail_header_reads.borrow() {
            return Err(err("get_http_request_header"));
        }
        Ok(self
            .headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()))
    }
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.call("request_headers");
        if *self.fail_header_reads.borrow() {
            return Err(err("get_http_request_headers"));
        }
        Ok(self.headers.borrow().clone())
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.call(format!("remove_request_header {name}"));
        if *self.fail_header_writes.borrow() {
            return Err(err("remove_http_request_header"));
        }
        self.headers.borrow_mut().retain(|(n, _)| n != name);
        Ok(())
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.call(format!("set_request_header {name}"));
        if *self.fail_header_writes.borrow() {
            return Err(err("set_http_request_header"));
        }
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_owned(), value.as_bytes().to_vec()));
        Ok(())
    }
    fn set_decision_state(&self, details: &str) -> Result<(), HostError> {
        self.call("set_decision_state");
        *self.decision_state.borrow_mut() = Some(details.to_owned());
        Ok(())
    }
    fn send_local_reply(&self, status: u32, body: &[u8]) -> Result<(), HostError> {
        self.call("send_local_reply");
        *self.local_reply.borrow_mut() = Some((status, body.to_vec()));
        Ok(())
    }
    fn close_downstream(&self) -> Result<(), HostError> {
        self.call("close_downstream");
        *self.closed.borrow_mut() = true;
        Ok(())
    }
    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        self.call("define_counter");
        let mut names = self.counter_names.borrow_mut();
        names.push(name.to_owned());
        u32::try_from(names.len() - 1).map_err(|_| err("define_metric"))
    }
    fn increment(&self, counter: u32) {
        self.call("increment");
        let names = self.counter_names.borrow();
        let name = names.get(counter as usize).cloned().unwrap_or_default();
        *self.counts.borrow_mut().entry(name).or_default() += 1;
    }
    fn log(&self, level: Level, message: &str) {
        self.call("log");
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
}
