// Generating images from a C++ program through tiledraw's public API: load a
// model, fill a request, watch the progress, write the pictures.
//
//   tiledraw_example_generate [MODEL] OUT.png
//
// Without MODEL it uses the bundled Fashion-MNIST text-to-image model and
// draws four sneakers (a class-conditional model: its class 0, or "sneaker").
#include <cstdio>
#include <string>

#include "tiledraw/tiledraw.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s [MODEL] OUT.png\n", argv[0]);
    return 2;
  }
  const std::string model = argc == 3 ? argv[1] : tiledraw::default_model_path();
  const std::string output = argv[argc - 1];
  try {
    const std::unique_ptr<tiledraw::Pipeline> pipeline = tiledraw::Pipeline::load(model);
    const tiledraw::ModelInfo& info = pipeline->info();
    std::printf("%s: %s\n", info.path.c_str(), info.description.c_str());

    tiledraw::GenerationRequest request;
    if (info.text) {
      request.prompt = "a white sneaker";
    } else {
      request.classes = {info.class_names.empty() ? "0" : "sneaker"};
    }
    request.batch = 4;
    request.steps = 25;
    request.sampler = tiledraw::Sampler::DpmPp2m;
    request.scheduler = tiledraw::Scheduler::Karras;
    request.seed = 7;
    const tiledraw::GenerationResult result = pipeline->generate(request, [](int done, int total) {
      std::printf("\rstep %d/%d", done, total);
      std::fflush(stdout);
    });
    tiledraw::write_png(output, tiledraw::image_grid(result.images, 4), {{"parameters", result.batch_parameters}});
    std::printf("\n%zu images in %.2f s: %s\n%s\n", result.images.size(), result.sampling_seconds, output.c_str(),
                result.batch_parameters.c_str());
  } catch (const tiledraw::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
