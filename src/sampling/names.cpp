#include <algorithm>

#include "tiledraw/error.h"
#include "tiledraw/sampling.h"

namespace tiledraw {
namespace {

constexpr Sampler kSamplers[] = {Sampler::Euler,   Sampler::EulerAncestral,   Sampler::Heun,       Sampler::Dpm2,
                                 Sampler::DpmPp2m, Sampler::DpmPp2sAncestral, Sampler::DpmPp2mSde, Sampler::Lcm,
                                 Sampler::Ddim,    Sampler::Ddpm};
constexpr Scheduler kSchedulers[] = {Scheduler::Default,     Scheduler::Normal,     Scheduler::Karras,
                                     Scheduler::Exponential, Scheduler::SgmUniform, Scheduler::Simple};

template <typename Kind, size_t N>
std::vector<std::string> names_of(const Kind (&kinds)[N], const char* (*name)(Kind)) {
  std::vector<std::string> names;
  for (const Kind kind : kinds) names.emplace_back(name(kind));
  return names;
}

template <typename Kind, size_t N>
Kind parse(std::string_view text, const Kind (&kinds)[N], const char* (*name)(Kind), const char* what) {
  for (const Kind kind : kinds) {
    if (text == name(kind)) return kind;
  }
  std::string choices;
  for (const Kind kind : kinds) choices += (choices.empty() ? "" : ", ") + std::string(name(kind));
  throw Error("unknown " + std::string(what) + " '" + std::string(text) + "' (one of " + choices + ")");
}

}  // namespace

const char* sampler_name(Sampler sampler) {
  switch (sampler) {
    case Sampler::Euler: return "euler";
    case Sampler::EulerAncestral: return "euler_a";
    case Sampler::Heun: return "heun";
    case Sampler::Dpm2: return "dpm2";
    case Sampler::DpmPp2m: return "dpm++2m";
    case Sampler::DpmPp2sAncestral: return "dpm++2s_a";
    case Sampler::DpmPp2mSde: return "dpm++2m_sde";
    case Sampler::Lcm: return "lcm";
    case Sampler::Ddim: return "ddim";
    case Sampler::Ddpm: break;
  }
  return "ddpm";
}

const char* scheduler_name(Scheduler scheduler) {
  switch (scheduler) {
    case Scheduler::Default: return "default";
    case Scheduler::Normal: return "normal";
    case Scheduler::Karras: return "karras";
    case Scheduler::Exponential: return "exponential";
    case Scheduler::SgmUniform: return "sgm_uniform";
    case Scheduler::Simple: break;
  }
  return "simple";
}

const char* sampler_label(Sampler sampler) {
  switch (sampler) {
    case Sampler::Euler: return "Euler";
    case Sampler::EulerAncestral: return "Euler a";
    case Sampler::Heun: return "Heun";
    case Sampler::Dpm2: return "DPM2";
    case Sampler::DpmPp2m: return "DPM++ 2M";
    case Sampler::DpmPp2sAncestral: return "DPM++ 2S a";
    case Sampler::DpmPp2mSde: return "DPM++ 2M SDE";
    case Sampler::Lcm: return "LCM";
    case Sampler::Ddim: return "DDIM";
    case Sampler::Ddpm: break;
  }
  return "DDPM";  // not in A1111, named in its style
}

const char* scheduler_label(Scheduler scheduler) {
  switch (scheduler) {
    case Scheduler::Default: return "Automatic";
    case Scheduler::Normal: return "Normal";
    case Scheduler::Karras: return "Karras";
    case Scheduler::Exponential: return "Exponential";
    case Scheduler::SgmUniform: return "SGM Uniform";
    case Scheduler::Simple: break;
  }
  return "Simple";
}

Sampler parse_sampler(std::string_view name) { return parse(name, kSamplers, sampler_name, "sampler"); }
Scheduler parse_scheduler(std::string_view name) { return parse(name, kSchedulers, scheduler_name, "scheduler"); }
std::vector<std::string> sampler_names() { return names_of(kSamplers, sampler_name); }
std::vector<std::string> scheduler_names() { return names_of(kSchedulers, scheduler_name); }

}  // namespace tiledraw
