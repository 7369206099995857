// Each native module registers its exports here with CLIPO_REGISTER_MODULE, so adding a kernel or an engine part
// never edits a shared file: addon.cpp walks the list at load time.
#pragma once
#include <napi.h>
#include <vector>

namespace clipo {

using ModuleInit = void (*)(Napi::Env env, Napi::Object exports);

struct ModuleEntry {
  const char* name;
  ModuleInit init;
};

inline std::vector<ModuleEntry>& moduleRegistry() {
  static std::vector<ModuleEntry> modules;  // function-local static: safe across translation units' init order
  return modules;
}

struct ModuleRegistrar {
  ModuleRegistrar(const char* name, ModuleInit init) { moduleRegistry().push_back({name, init}); }
};

}  // namespace clipo

#define CLIPO_CONCAT_INNER(a, b) a##b
#define CLIPO_CONCAT(a, b) CLIPO_CONCAT_INNER(a, b)
// Usage at namespace scope in a .cpp:  CLIPO_REGISTER_MODULE(contrastive, InitContrastive);
#define CLIPO_REGISTER_MODULE(name, fn) \
  static ::clipo::ModuleRegistrar CLIPO_CONCAT(clipo_module_registrar_, name)(#name, fn)
