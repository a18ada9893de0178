#include "pipeline/conditioning.h"

#include <algorithm>
#include <cctype>

#include "tiledraw/error.h"

namespace tiledraw::pipeline {
namespace {

// Names compare without case, with spaces, underscores and hyphens alike.
std::string name_key(const std::string& name) {
  std::string key;
  for (const char c : name) key += (c == ' ' || c == '_' || c == '-') ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t first = key.find_first_not_of('_'), last = key.find_last_not_of('_');
  return first == std::string::npos ? std::string() : key.substr(first, last - first + 1);
}

bool matches(const std::string& label, const std::string& key) {
  size_t start = 0;
  for (size_t comma; start <= label.size(); start = comma + 1) {
    comma = label.find(',', start);
    if (comma == std::string::npos) comma = label.size();
    if (name_key(label.substr(start, comma - start)) == key) return true;
  }
  return false;
}

}  // namespace

int64_t Conditioning::context_tokens() const {
  for (const ConditioningInput& input : inputs) {
    if (input.role == models::InputRole::TextContext) return input.shape.front();
  }
  return 0;
}

ClassConditioner::ClassConditioner(int64_t classes, int64_t null_class, std::vector<std::string> names)
    : classes_(classes), null_class_(null_class), names_(std::move(names)) {}

std::vector<int64_t> ClassConditioner::ids(const std::vector<std::string>& items) const {
  std::vector<int64_t> ids;
  for (const std::string& item : items) {
    if (item == "all") {
      for (int64_t i = 0; i < classes_; ++i) ids.push_back(i);
      continue;
    }
    if (!item.empty() && std::all_of(item.begin(), item.end(), ::isdigit)) {
      const int64_t id = item.size() > 9 ? classes_ : std::stoll(item);
      if (id >= classes_) throw Error("class " + item + " is outside 0.." + std::to_string(classes_ - 1));
      ids.push_back(id);
      continue;
    }
    if (names_.empty()) throw Error("'" + item + "' is not a class id, and the model has no class names");
    const std::string key = name_key(item);
    const auto it = std::find_if(names_.begin(), names_.end(), [&](const std::string& n) { return matches(n, key); });
    if (it == names_.end()) throw Error("no class named '" + item + "'");
    ids.push_back(it - names_.begin());
  }
  return ids;
}

std::string ClassConditioner::label(int64_t id) const {
  const size_t i = static_cast<size_t>(id);
  return std::to_string(id) + (i < names_.size() ? " (" + names_[i] + ")" : std::string());
}

int64_t ClassConditioner::images(const GenerationRequest& r) const {
  return static_cast<int64_t>(ids(r.classes.empty() ? std::vector<std::string>{"0"} : r.classes).size()) * r.batch;
}

Conditioning ClassConditioner::encode(const GenerationRequest& r, const EncodeContext&) const {
  const std::vector<int64_t> classes = ids(r.classes.empty() ? std::vector<std::string>{"0"} : r.classes);
  const std::vector<int64_t> negative = ids(r.negative_classes);
  if (negative.size() > 1 && negative.size() != classes.size()) {
    throw Error(std::to_string(negative.size()) + " negative classes for " + std::to_string(classes.size()) +
                " classes: give one, or one per class");
  }
  if (classes.empty() || r.batch < 1) throw Error("nothing to generate: no classes or no images");
  Conditioning c;
  c.images = static_cast<int64_t>(classes.size()) * r.batch;
  ConditioningInput labels{models::InputRole::ClassLabels, {}, {}, {}};
  for (size_t k = 0; k < classes.size(); ++k) {
    const int64_t away = negative.empty() ? null_class_ : negative[negative.size() == 1 ? 0 : k];
    std::string subject = "class " + label(classes[k]);
    if (!negative.empty()) subject += "\nNegative class: " + label(away);
    c.batch_subject += (c.batch_subject.empty() ? "class " : ", ") + label(classes[k]);
    for (int64_t i = 0; i < r.batch; ++i) {
      labels.cond.push_back(static_cast<float>(classes[k]));
      labels.uncond.push_back(static_cast<float>(away));
      c.subjects.push_back(subject);
    }
  }
  if (!negative.empty()) {
    std::string away;
    for (const int64_t id : negative) away += (away.empty() ? "" : ", ") + label(id);
    c.batch_subject += "\nNegative class: " + away;
  }
  c.inputs.push_back(std::move(labels));
  return c;
}

}  // namespace tiledraw::pipeline
