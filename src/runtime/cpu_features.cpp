#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tiledraw/cpu.h"
#include "tiledraw/error.h"

namespace tiledraw {
namespace {

constexpr int kArchGetXcompPerm = 0x1022;
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool bit(uint32_t reg, int n) { return (reg >> n) & 1u; }

std::string brand_string() {
  uint32_t regs[12] = {};
  if (__get_cpuid_max(0x80000000, nullptr) < 0x80000004) return "";
  for (uint32_t leaf = 0; leaf < 3; ++leaf) {
    __get_cpuid(0x80000002 + leaf, &regs[4 * leaf], &regs[4 * leaf + 1], &regs[4 * leaf + 2], &regs[4 * leaf + 3]);
  }
  std::string name(reinterpret_cast<const char*>(regs), sizeof(regs));
  name.resize(name.find('\0') == std::string::npos ? name.size() : name.find('\0'));
  const size_t first = name.find_first_not_of(' '), last = name.find_last_not_of(' ');
  return first == std::string::npos ? "" : name.substr(first, last - first + 1);
}

CpuFeatures detect() {
  CpuFeatures f;
  f.name = brand_string();
  uint32_t a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !bit(c, 27)) {  // no OSXSAVE: no AVX state at all
    f.amx_status = "not supported by this CPU";
    return f;
  }
  const bool fma = bit(c, 12), avx = bit(c, 28), f16c = bit(c, 29);
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;
  const bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;

  uint32_t b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  __get_cpuid_count(7, 0, &a, &b7, &c7, &d7);
  __get_cpuid_count(7, 1, &a71, &b, &c, &d);

  f.avx2 = os_ymm && avx && fma && f16c && bit(b7, 5);
  f.avx512 = f.avx2 && os_zmm && bit(b7, 16) && bit(b7, 17) && bit(b7, 30) && bit(b7, 31);
  f.avx512_vnni = f.avx512 && bit(c7, 11);
  f.avx512_bf16 = f.avx512 && bit(a71, 5);
  f.avx512_fp16 = f.avx512 && bit(d7, 23);

  const bool cpu_amx = bit(d7, 24) && bit(d7, 25);
  if (!cpu_amx) {
    f.amx_status = "not supported by this CPU";
    return f;
  }
  // Linux hands out the 8 KiB tile state only on request (arch_prctl, kernel 5.16+).
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    f.amx_status = std::string("the kernel refused the tile state: ") + std::strerror(errno);
    return f;
  }
  uint64_t permitted = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &permitted) != 0 || !(permitted & (1ull << kXfeatureXtiledata))) {
    f.amx_status = "the kernel did not grant the tile state";
    return f;
  }
  f.amx_int8 = true;
  f.amx_bf16 = bit(d7, 22);
  f.amx_status = "available";
  return f;
}

IsaLevel hardware_level() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512) return IsaLevel::Avx512;
  if (f.avx2) return IsaLevel::Avx2;
  return IsaLevel::Scalar;
}

IsaLevel requested_level() {
  const char* env = std::getenv("TILEDRAW_ISA");
  if (!env || !*env) return IsaLevel::Avx512;
  for (IsaLevel level : {IsaLevel::Scalar, IsaLevel::Avx2, IsaLevel::Avx512}) {
    if (std::strcmp(env, isa_level_name(level)) == 0) return level;
  }
  throw Error(std::string("TILEDRAW_ISA: unknown level '") + env + "' (use scalar, avx2 or avx512)");
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

IsaLevel isa_level() {
  static const IsaLevel level = std::min(hardware_level(), requested_level());
  return level;
}

const char* isa_level_name(IsaLevel level) {
  switch (level) {
    case IsaLevel::Avx512:
      return "avx512";
    case IsaLevel::Avx2:
      return "avx2";
    case IsaLevel::Scalar:
      break;
  }
  return "scalar";
}

}  // namespace tiledraw
