// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// Module entry: exports only. The probe lifecycle lives in probe.c; its JS face
// in probe_binding.cc.
#include <napi.h>
#include "ctstorm.h"
#include "btf_sizes.h"
#include "probe_binding.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Probe", Probe::Define(env));
  exports.Set("recordSize", Napi::Number::New(env, sizeof(struct ctstorm_record)));
  exports.Set("recordVersion", Napi::Number::New(env, CTSTORM_RECORD_VERSION));
  Napi::Object hooks = Napi::Object::New(env);
  for (int m = 0; m < CT_MODE_COUNT; m++)
    hooks.Set(ct_mode_name(static_cast<enum ct_mode>(m)),
              ct_probe_hooks(static_cast<enum ct_mode>(m)));
  exports.Set("hooks", hooks);
  exports.Set("structSizes", Napi::Function::New<StructSizes>(env, "structSizes"));
  return exports;
}

NODE_API_MODULE(ctstorm, Init)
