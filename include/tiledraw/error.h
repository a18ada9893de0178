#pragma once

#include <stdexcept>
#include <string>

namespace tiledraw {

// Every failure caused by input (a file, a flag, a tensor) is reported with this
// type. The message is one line that names what is wrong, ready for the user.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Thrown by work that was asked to stop (a generation's cancel flag); it
// leaves nothing behind.
class Cancelled : public Error {
 public:
  using Error::Error;
};

}  // namespace tiledraw
