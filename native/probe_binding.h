// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#ifndef CTSTORM_PROBE_BINDING_H
#define CTSTORM_PROBE_BINDING_H

#include <napi.h>
#include <cstdint>
#include <memory>
#include <vector>
#include "probe.h"

// A loaded, attached probe. All methods run on the JS thread; the drain runs on
// a libuv worker (DrainWorker) and at most one is in flight per probe.
class Probe : public Napi::ObjectWrap<Probe> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Probe(const Napi::CallbackInfo& info);
  ~Probe() override;

 private:
  friend class DrainWorker;

  Napi::Value Poll(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Sweep(const Napi::CallbackInfo& info);
  Napi::Value DeleteNetnsRow(const Napi::CallbackInfo& info);
  Napi::Value CensusStart(const Napi::CallbackInfo& info);
  Napi::Value CensusRun(const Napi::CallbackInfo& info);
  Napi::Value CensusRead(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Mode(const Napi::CallbackInfo& info);

  void DrainDone();   // JS thread, after a drain
  void Release();     // frees the probe; never while a drain runs
  static void OnEnvExit(Probe* self);

  ct_probe* probe_ = nullptr;
  // The worker drains here (see DrainWorker).
  std::shared_ptr<std::vector<uint8_t>> staging_ = std::make_shared<std::vector<uint8_t>>();
  enum ct_mode mode_ = CT_MODE_COUNT;
  bool busy_ = false;
  bool closePending_ = false;
  Napi::Env::CleanupHook<void (*)(Probe*), Probe> exitHook_;
};

#endif  // CTSTORM_PROBE_BINDING_H
