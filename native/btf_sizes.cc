// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// structSizes(module, names): sizeof each named struct in the running kernel's
// BTF (vmlinux, then the module's split BTF when the module is loaded), for the
// advisor's memory cost. A struct not found is -1; no BTF at all throws.
#include <napi.h>
#include <errno.h>
#include <string.h>
#include <bpf/btf.h>
#include "btf_sizes.h"

Napi::Value StructSizes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsString() || !info[1].IsArray())
    throw Napi::TypeError::New(env, "structSizes(module: string, names: string[])");
  struct btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) throw Napi::Error::New(env, std::string("kernel BTF unreadable: ") + strerror(errno));
  std::string module = info[0].As<Napi::String>();
  // Missing when the module is built in (its types are then in vmlinux) or not loaded.
  struct btf* mod = btf__load_module_btf(module.c_str(), vmlinux);
  Napi::Array names = info[1].As<Napi::Array>();
  Napi::Object out = Napi::Object::New(env);
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).As<Napi::String>();
    struct btf* btf = mod ? mod : vmlinux;  // split BTF finds vmlinux's types too
    int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_STRUCT);
    out.Set(name, Napi::Number::New(env, id > 0 ? static_cast<double>(btf__type_by_id(btf, id)->size) : -1.0));
  }
  btf__free(mod);
  btf__free(vmlinux);
  return out;
}
