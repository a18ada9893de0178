#pragma once

#include <cstdint>
#include <string>

// A process-wide limit on the memory tiledraw allocates for its own work (the
// arenas, latents, position tables and converted weights; not the mapped model
// files). Work that would exceed it is refused up front with an Error that
// gives the size and the limit, instead of the kernel killing the process.
namespace tiledraw {

// Physical memory of the machine: the default limit.
uint64_t physical_memory_bytes();
uint64_t memory_limit();
void set_memory_limit(uint64_t bytes);
// How a user changes the limit, named in parentheses after it in messages (a
// program's flag); set once before any work.
void set_memory_limit_hint(std::string hint);
// "512M", "2G", "1.5GiB", "1048576": a size as people write it. Text that is
// not a positive size is an Error naming `flag`.
uint64_t parse_memory_size(const std::string& text, const std::string& flag);

// Bytes counted against the limit while this object lives. Shared by every
// thread: two generations at once share one budget.
class MemoryReservation {
 public:
  MemoryReservation() = default;
  // `what` names the use in the message: "the arena of a 4096 x 4096 image".
  MemoryReservation(uint64_t bytes, const std::string& what);
  MemoryReservation(MemoryReservation&& other) noexcept;
  MemoryReservation& operator=(MemoryReservation&& other) noexcept;
  ~MemoryReservation();
  MemoryReservation(const MemoryReservation&) = delete;
  MemoryReservation& operator=(const MemoryReservation&) = delete;

  // Adds to this reservation (as a model's converted weights pile up).
  void grow(uint64_t bytes, const std::string& what);
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

// What is reserved now, by every thread.
uint64_t memory_reserved();

}  // namespace tiledraw
