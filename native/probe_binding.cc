// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include "probe_binding.h"

#include <algorithm>
#include <memory>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace {

// A JS Error carrying errno (negative, as Node does) so JS can name it (EPERM...).
Napi::Error ErrnoError(Napi::Env env, int rc, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("errno", Napi::Number::New(env, rc));
  return e;
}

bool ParseMode(const std::string& s, enum ct_mode* out) {
  for (int m = 0; m < CT_MODE_COUNT; m++) {
    if (s == ct_mode_name(static_cast<enum ct_mode>(m))) {
      *out = static_cast<enum ct_mode>(m);
      return true;
    }
  }
  return false;
}


}  // namespace

// Drains records on a libuv worker thread into memory of its own, then copies
// them into the caller's buffer on the JS thread when the promise settles: the
// JS buffer is never written while JS may still be reading the previous batch.
class DrainWorker : public Napi::AsyncWorker {
 public:
  DrainWorker(Probe* probe, Napi::Uint8Array buf, int timeoutMs)
      : Napi::AsyncWorker(probe->Env()),
        probe_(probe),
        deferred_(Napi::Promise::Deferred::New(probe->Env())),
        staging_(probe->staging_),
        timeoutMs_(timeoutMs) {
    staging_->resize(buf.ByteLength());
    bufRef_ = Napi::Persistent(buf);
    probeRef_ = Napi::Persistent(probe->Value());
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  // Worker thread.
  void Execute() override {
    result_ = ct_probe_drain(probe_->probe_, staging_->data(), staging_->size(), timeoutMs_);
  }

  // JS thread.
  void OnOK() override {
    Napi::Env env = Env();
    probe_->DrainDone();
    if (result_ < 0) {
      deferred_.Reject(ErrnoError(env, static_cast<int>(result_),
                                  std::string("draining the ring buffer failed: ") +
                                      strerror(static_cast<int>(-result_)))
                           .Value());
      return;
    }
    Napi::Uint8Array buf = bufRef_.Value();
    size_t n = std::min(static_cast<size_t>(result_), buf.ByteLength());
    if (n) std::memcpy(buf.Data(), staging_->data(), n);
    deferred_.Resolve(Napi::Number::New(env, static_cast<double>(n)));
  }

 private:
  Probe* probe_;
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> bufRef_;
  Napi::ObjectReference probeRef_;
  // The probe's (one drain at a time), shared so that it outlives a Probe torn
  // down with its environment while this drain still runs.
  std::shared_ptr<std::vector<uint8_t>> staging_;
  int timeoutMs_;
  long result_ = 0;
};

Napi::Function Probe::Define(Napi::Env env) {
  return DefineClass(env, "Probe",
                     {
                         InstanceMethod<&Probe::Poll>("poll"),
                         InstanceMethod<&Probe::Counters>("counters"),
                         InstanceMethod<&Probe::Sweep>("sweep"),
                         InstanceMethod<&Probe::DeleteNetnsRow>("deleteNetnsRow"),
                         InstanceMethod<&Probe::CensusStart>("censusStart"),
                         InstanceMethod<&Probe::CensusRun>("censusRun"),
                         InstanceMethod<&Probe::CensusRead>("censusRead"),
                         InstanceMethod<&Probe::Close>("close"),
                         InstanceAccessor<&Probe::Mode>("mode"),
                     });
}

// new Probe(mode, { ringBytes, liveEntries, pendingEntries, netnsEntries, chainWalk, debug }): opens, loads and attaches,
// or throws an Error with errno and the step that failed.
Probe::Probe(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Probe>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "Probe(mode, options) expected");
  if (!ParseMode(info[0].As<Napi::String>().Utf8Value(), &mode_))
    throw Napi::TypeError::New(env, "unknown mode");
  Napi::Object opts = info[1].As<Napi::Object>();
  // Every size comes from the caller (src/source.ts holds the defaults).
  for (const char* key : {"ringBytes", "liveEntries", "pendingEntries", "netnsEntries", "chainWalk"}) {
    if (!opts.Get(key).IsNumber()) throw Napi::TypeError::New(env, std::string("Probe options: ") + key + " (a number) expected");
  }
  ct_probe_opts o{};
  o.ring_bytes = opts.Get("ringBytes").As<Napi::Number>().Uint32Value();
  o.live_entries = opts.Get("liveEntries").As<Napi::Number>().Uint32Value();
  o.pending_entries = opts.Get("pendingEntries").As<Napi::Number>().Uint32Value();
  o.netns_entries = opts.Get("netnsEntries").As<Napi::Number>().Uint32Value();
  o.chain_walk = opts.Get("chainWalk").As<Napi::Number>().Uint32Value();
  o.debug = opts.Get("debug").ToBoolean();

  char err[CT_ERR_LEN];
  int rc = ct_probe_open(mode_, &o, &probe_, err, sizeof(err));
  if (rc) throw ErrnoError(env, rc, err);
  exitHook_ = env.AddCleanupHook(&Probe::OnEnvExit, this);
}

Probe::~Probe() {
  if (!exitHook_.IsEmpty()) exitHook_.Remove(Env());
  // A drain still running on a worker uses the probe: leave it to the process's
  // end (the environment is going away; its fds close with it).
  if (!busy_) Release();
}

// The environment is going away (process exit, worker end): detach now. A
// drain still running keeps the probe's memory; the process frees it.
void Probe::OnEnvExit(Probe* self) {
  self->exitHook_ = {};
  if (self->busy_) return;
  self->Release();
}

void Probe::Release() {
  ct_probe_close(probe_);
  probe_ = nullptr;
}

void Probe::DrainDone() {
  busy_ = false;
  if (closePending_) Release();
}

// poll(buffer: Uint8Array, timeoutMs): Promise<bytes written>
Napi::Value Probe::Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  if (busy_) throw Napi::Error::New(env, "a poll is already in flight");
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "poll(Uint8Array, timeoutMs) expected");
  Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
  auto* worker = new DrainWorker(this, buf, info[1].As<Napi::Number>().Int32Value());
  busy_ = true;
  worker->Queue();
  return worker->Promise();
}

static Napi::Object CountsObject(Napi::Env env, const ctstorm_counts& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("inserts", Napi::Number::New(env, static_cast<double>(c.inserts)));
  o.Set("destroys", Napi::Number::New(env, static_cast<double>(c.destroys)));
  o.Set("lost", Napi::Number::New(env, static_cast<double>(c.lost)));
  return o;
}

// counters(): { protocols: [{l4proto, inserts, destroys, lost}],
//               netns: [{cookie, inode, l4proto, ...}], health: number[],
//               missedRuns: number, missesVisible: boolean }, nonzero rows only.
Napi::Value Probe::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  std::vector<ctstorm_counts> protos(CT_PROTO_SLOTS);
  int rc = ct_probe_read_protocols(probe_, protos.data());
  if (rc) throw ErrnoError(env, rc, std::string("reading protocol counters failed: ") + strerror(-rc));
  Napi::Array protoRows = Napi::Array::New(env);
  for (uint32_t k = 0; k < CT_PROTO_SLOTS; k++) {
    const ctstorm_counts& c = protos[k];
    if (!c.inserts && !c.destroys && !c.lost) continue;
    Napi::Object o = CountsObject(env, c);
    o.Set("l4proto", Napi::Number::New(env, k));
    protoRows.Set(protoRows.Length(), o);
  }

  std::vector<ct_netns_counts> ns(1024);
  long n = ct_probe_read_netns(probe_, ns.data(), ns.size());
  if (n > static_cast<long>(ns.size())) {
    ns.resize(static_cast<size_t>(n) + 256);
    n = ct_probe_read_netns(probe_, ns.data(), ns.size());
  }
  if (n < 0) throw ErrnoError(env, static_cast<int>(n), "reading netns counters failed");
  Napi::Array nsRows = Napi::Array::New(env);
  for (long i = 0; i < n && i < static_cast<long>(ns.size()); i++) {
    Napi::Object o = CountsObject(env, ns[i].c);
    o.Set("inode", Napi::Number::New(env, ns[i].netns_ino));
    o.Set("cookie", Napi::Number::New(env, static_cast<double>(ns[i].netns_cookie)));
    o.Set("l4proto", Napi::Number::New(env, ns[i].l4proto));
    nsRows.Set(nsRows.Length(), o);
  }

  uint64_t health[CT_HEALTH_SLOTS];
  rc = ct_probe_read_health(probe_, health);
  if (rc) throw ErrnoError(env, rc, "reading health counters failed");
  Napi::Array healthRow = Napi::Array::New(env, CT_HEALTH_SLOTS);
  for (uint32_t k = 0; k < CT_HEALTH_SLOTS; k++)
    healthRow.Set(k, Napi::Number::New(env, static_cast<double>(health[k])));

  uint64_t missed = 0;
  bool visible = false;
  rc = ct_probe_read_misses(probe_, &missed, &visible);
  if (rc) throw ErrnoError(env, rc, "reading the programs' missed runs failed");

  Napi::Object out = Napi::Object::New(env);
  out.Set("missedRuns", Napi::Number::New(env, static_cast<double>(missed)));
  out.Set("missesVisible", Napi::Boolean::New(env, visible));
  out.Set("protocols", protoRows);
  out.Set("netns", nsRows);
  out.Set("health", healthRow);
  return out;
}

// sweep(): tracepoint mode reports the entries inserted since the last sweep
// (the drain sweeps too); a no-op in the other modes.
Napi::Value Probe::Sweep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  int rc = ct_probe_sweep(probe_);
  if (rc) throw ErrnoError(env, rc, std::string("sweep failed: ") + strerror(-rc));
  return env.Undefined();
}

// deleteNetnsRow(cookie, inode, l4proto): true when a row was deleted.
Napi::Value Probe::DeleteNetnsRow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "deleteNetnsRow(cookie, inode, l4proto) expected");
  int rc = ct_probe_delete_netns(probe_, static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()),
                                 info[1].As<Napi::Number>().Uint32Value(),
                                 static_cast<uint8_t>(info[2].As<Napi::Number>().Uint32Value()));
  if (rc && rc != -ENOENT) throw ErrnoError(env, rc, std::string("deleting a netns row failed: ") + strerror(-rc));
  return Napi::Boolean::New(env, rc == 0);
}

// censusStart(buckets): "started", "not-located" (no insert has shown where the
// table is) or "resized" (the table was resized and no insert has shown the new one).
Napi::Value Probe::CensusStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "censusStart(buckets) expected");
  int rc = ct_probe_census_start(probe_, info[0].As<Napi::Number>().Uint32Value());
  if (rc == -ENOENT) return Napi::String::New(env, "not-located");
  if (rc == -ESTALE) return Napi::String::New(env, "resized");
  if (rc) throw ErrnoError(env, rc, std::string("starting the census failed: ") + strerror(-rc));
  return Napi::String::New(env, "started");
}

// censusRun(maxRuns): "running", "done", or "resized" (under the walk: its counts are void).
Napi::Value Probe::CensusRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "censusRun(maxRuns) expected");
  bool done = false;
  int rc = ct_probe_census_run(probe_, info[0].As<Napi::Number>().Int32Value(), &done);
  if (rc == -ESTALE) return Napi::String::New(env, "resized");
  if (rc) throw ErrnoError(env, rc, std::string("running the census failed: ") + strerror(-rc));
  return Napi::String::New(env, done ? "done" : "running");
}

// censusRead(): { done, buckets, bucketsWalked, nodes, entries, empty, longest,
//   moved, readErrors, netnsOverflow, natClash, histogram: number[], netns: [{cookie, inode, entries}] }
Napi::Value Probe::CensusRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!probe_ || closePending_) throw Napi::Error::New(env, "probe is closed");
  ct_census c{};
  std::vector<ct_census_netns> rows(1024);
  long n = ct_probe_census_read(probe_, &c, rows.data(), rows.size());
  if (n > static_cast<long>(rows.size())) {
    rows.resize(static_cast<size_t>(n) + 256);
    n = ct_probe_census_read(probe_, &c, rows.data(), rows.size());
  }
  if (n < 0) throw ErrnoError(env, static_cast<int>(n), "reading the census failed");
  auto num = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("done", Napi::Boolean::New(env, c.done));
  o.Set("buckets", num(c.buckets));
  o.Set("bucketsWalked", num(c.totals.buckets_walked));
  o.Set("nodes", num(c.totals.nodes));
  o.Set("entries", num(c.totals.entries));
  o.Set("empty", num(c.totals.empty));
  o.Set("longest", num(c.totals.longest));
  o.Set("moved", num(c.totals.moved));
  o.Set("readErrors", num(c.totals.read_errors));
  o.Set("netnsOverflow", num(c.totals.netns_overflow));
  o.Set("natClash", num(c.totals.nat_clash));
  Napi::Array hist = Napi::Array::New(env, CTSTORM_CHAIN_BINS + 1);
  for (uint32_t k = 0; k <= CTSTORM_CHAIN_BINS; k++) hist.Set(k, num(c.histogram[k]));
  o.Set("histogram", hist);
  Napi::Array ns = Napi::Array::New(env);
  for (long i = 0; i < n && i < static_cast<long>(rows.size()); i++) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("cookie", num(rows[i].netns_cookie));
    r.Set("inode", num(rows[i].netns_ino));
    r.Set("entries", num(rows[i].entries));
    ns.Set(ns.Length(), r);
  }
  o.Set("netns", ns);
  return o;
}

// close(): detaches now, or right after the in-flight poll settles.
Napi::Value Probe::Close(const Napi::CallbackInfo& info) {
  if (busy_)
    closePending_ = true;
  else
    Release();
  return info.Env().Undefined();
}

Napi::Value Probe::Mode(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ct_mode_name(mode_));
}
