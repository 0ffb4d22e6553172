// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#pragma once
#include <napi.h>

Napi::Value StructSizes(const Napi::CallbackInfo& info);
