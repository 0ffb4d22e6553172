{
  "targets": [
    {
      "target_name": "ctstorm",
      "sources": [
        "native/addon.cc",
        "native/btf_sizes.cc",
        "native/probe_binding.cc",
        "native/probe.c"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(bash scripts/libbpf.sh --include <(target_arch))",
        "bpf",
        "gen/<(target_arch)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "cflags_cc": ["-fvisibility=hidden", "-std=c++17", "-fexceptions"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["<!@(bash scripts/libbpf.sh --link <(target_arch))"]
    }
  ]
}
