#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tiledraw/accel.h"

// Constructors of the backends, each in its own folder. A backend that cannot
// run on this machine returns null and says why.
namespace tiledraw::accel {

// Checks what every backend's pack relies on: a non-empty shape and values in
// [-127, 127] (8-bit S never writes -128; the AVX2 kernel's sign trick needs it).
void validate_weight(const WeightView& weight);

// The weight's rows q[n, k], copied from the view or unpacked from its stored
// panels: for backends that keep their own copy in another layout.
std::vector<int8_t> weight_rows(const WeightView& weight);

// Checks that the arguments of a run agree with the program and with each other.
void validate_run(const Program& program, const MatmulArgs& args);

// A backend and a program it prepared, to be timed against others.
struct TimedCandidate {
  const Accelerator* accel;
  const Program* program;
};

// The median seconds per run of each candidate, all on made-up data of the
// same shape (weights packed by each backend), timed interleaved: how
// backends choose between kernels when preparing.
std::vector<double> median_seconds_per_run(const std::vector<TimedCandidate>& candidates);

// Packs each weight for whichever candidate ran its shape (n, k) faster, timed
// once per shape at 1024 rows, and sends every run to that candidate: one
// packed copy per weight, whichever wins. Choices
// are kept in `choices_file` (none when empty) for later processes on the same
// CPU, thread count and candidates, which then skip the timing.
std::unique_ptr<Accelerator> make_auto_backend(std::vector<std::unique_ptr<Accelerator>> candidates,
                                               std::string choices_file);

// TILEDRAW_CACHE_DIR/auto-choices.json, else under $XDG_CACHE_HOME/tiledraw or
// ~/.cache/tiledraw; "" (remember nothing) when TILEDRAW_CACHE_DIR is set empty.
std::string default_choices_file();

std::unique_ptr<Accelerator> make_ref_backend();
std::unique_ptr<Accelerator> make_vnni_backend(std::string* why);
std::unique_ptr<Accelerator> make_onednn_backend(std::string* why);
std::unique_ptr<Accelerator> make_amx_backend(std::string* why);

}  // namespace tiledraw::accel
