#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "models/mlp_classifier.h"
#include "runtime/executor.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct ClassifyArgs {
  std::string model, precision = "auto";
  std::vector<std::string> images;
  bool json = false;
};

void run_classify(const ClassifyArgs& a) {
  const SafetensorsFile file = SafetensorsFile::open(a.model);
  const std::unique_ptr<Accelerator> accel = selected_accelerator();
  const models::MlpClassifier judge(file, *accel, precision_flag(a.precision, "--precision"));
  const int64_t features = judge.channels() * judge.height() * judge.width();

  // Every image is read and checked before anything runs or prints.
  std::vector<float> pixels;
  pixels.reserve(static_cast<size_t>(features) * a.images.size());
  for (const std::string& path : a.images) {
    const Image image = read_png(path, judge.channels());
    if (image.width != judge.width() || image.height != judge.height()) {
      throw Error(path + ": " + std::to_string(image.width) + " x " + std::to_string(image.height) + " pixels, the classifier takes " +
                  std::to_string(judge.width()) + " x " + std::to_string(judge.height()));
    }
    for (int64_t c = 0; c < image.channels; ++c) {  // interleaved pixels to planes in [-1, 1]
      for (int64_t i = 0; i < image.width * image.height; ++i) {
        pixels.push_back(static_cast<float>(image.pixels[static_cast<size_t>(i * image.channels + c)]) / 127.5f - 1.0f);
      }
    }
  }
  const int64_t batch = static_cast<int64_t>(a.images.size());
  const auto built = judge.build(batch);
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  exec.run({pixels.data()});
  const float* logits = exec.data(built->logits);

  nlohmann::json results = nlohmann::json::array();
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = logits + b * judge.classes();
    const int64_t best = std::max_element(row, row + judge.classes()) - row;
    double total = 0;
    for (int64_t k = 0; k < judge.classes(); ++k) total += std::exp(static_cast<double>(row[k] - row[best]));
    const double probability = 1.0 / total;
    const std::string name = judge.class_names().empty() ? "" : judge.class_names()[static_cast<size_t>(best)];
    if (a.json) {
      results.push_back({{"file", a.images[static_cast<size_t>(b)]}, {"class", best}, {"name", name}, {"probability", probability}});
    } else {
      std::printf("%s: %lld%s%s (p %.2f)\n", a.images[static_cast<size_t>(b)].c_str(), static_cast<long long>(best),
                  name.empty() ? "" : " ", name.c_str(), probability);
    }
  }
  if (a.json) std::printf("%s\n", results.dump(2).c_str());
}

}  // namespace

void add_classify_command(CLI::App& app) {
  auto args = std::make_shared<ClassifyArgs>();
  CLI::App* cmd = app.add_subcommand("classify", "Classify PNG images with an MLP classifier (the judge of generated images)");
  cmd->add_option("-m,--model", args->model, "Classifier safetensors (fc1..fcN, metadata input_shape and class_names)")->required();
  cmd->add_option("images", args->images, "PNG images of the classifier's input size")->required();
  cmd->add_option("--precision", args->precision, "Matrices as stored (auto), float, or 8bit-s")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print a JSON list of {file, class, name, probability}");
  cmd->callback([args] { run_classify(*args); });
}

}  // namespace tiledraw::cli
