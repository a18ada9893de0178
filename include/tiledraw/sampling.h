#pragma once

#include <string>
#include <string_view>
#include <vector>

// The samplers and noise schedules a generation can ask for, by the names the
// command line, the A1111 API and stable-diffusion.cpp use.
namespace tiledraw {

// The samplers, as k-diffusion and the A1111 web UI name them.
enum class Sampler { Euler, EulerAncestral, Heun, Dpm2, DpmPp2m, DpmPp2sAncestral, DpmPp2mSde, Lcm, Ddim, Ddpm };
// The noise schedules (A1111's "Schedule type"). `Default` is the sampler's
// own: ddim and ddpm walk the model's training timesteps as its scheduler
// config spaces them, the others `Normal`.
enum class Scheduler { Default, Normal, Karras, Exponential, SgmUniform, Simple };
const char* sampler_name(Sampler sampler);        // "euler_a", "dpm++2m", ...
const char* scheduler_name(Scheduler scheduler);  // "default", "karras", ...
// The A1111 web UI's labels, which it shows and writes in a PNG's parameters
// text: "DPM++ 2M", "Euler a"; "Karras", "SGM Uniform" ("Automatic" for Default).
const char* sampler_label(Sampler sampler);
const char* scheduler_label(Scheduler scheduler);
Sampler parse_sampler(std::string_view name);     // an Error names the choices
Scheduler parse_scheduler(std::string_view name);
std::vector<std::string> sampler_names();
std::vector<std::string> scheduler_names();

}  // namespace tiledraw
