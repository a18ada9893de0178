#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tiledraw/accel.h"
#include "tiledraw/checkpoint.h"
#include "tiledraw/convert.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"
#include "tiledraw/quant8s.h"
#include "tiledraw/sampling.h"

// Generation as a library: load a model from a path, fill a request, get
// images. The `tiledraw` program's `generate` and `forward` are thin mappings
// of flags onto this API, and so is anything else that generates (a server).
namespace tiledraw {

// Floats with a shape, row-major: inputs and outputs of `forward`, and
// initial noise.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct LoadOptions {
  std::string family;  // empty: detected from the tensors; or a family's name ("dit")
  Precision precision = Precision::AsStored;
  std::string vae;  // a VAE file or folder that replaces the checkpoint's own
  Precision vae_precision = Precision::AsStored;
  std::string accelerator;  // a backend name; empty: $TILEDRAW_ACCEL, else auto
  std::vector<std::string> class_names;  // for class-conditional models without names of their own
  // Text-to-image models: where the CLIP vocabulary is when the model carries
  // none (a file or folder; empty: $TILEDRAW_TOKENIZER, files beside the
  // checkpoint, the Hugging Face cache), and what the model predicts when
  // neither its config nor its file says ("eps" or "v"; empty: noise).
  std::string tokenizer;
  std::string prediction;
  // Where a prompt's <lora:NAME:TE:UNET> tags find their adapters (A1111's
  // --lora-dir): a folder searched, with its subfolders, for .safetensors
  // files, NAME being a file's name without the extension or its
  // ss_output_name alias. Empty: such a tag is an Error.
  std::string lora_dir;
};

// A LoRA adapter file and its strengths on the UNet and the text encoders
// (A1111's <lora:NAME:TE:UNET>): each layer gets strength x alpha / rank x up
// x down beside it.
struct LoraRequest {
  std::string path;
  double unet_strength = 1.0, text_strength = 1.0;
};

// An adapter of the LoRA folder, as A1111's /sdapi/v1/loras lists it.
struct LoraFolderEntry {
  std::string name;   // the file's name without .safetensors: what a tag names
  std::string alias;  // its ss_output_name metadata, else the name: what a tag may name instead
  std::string path;
  std::map<std::string, std::string> metadata;  // the file header's (empty when it cannot be read)
};

// One generation. Unset optional fields take the model's defaults (ModelInfo).
struct GenerationRequest {
  // Class-conditional models: class ids or names, or "all"; `negative_classes`
  // are steered away from (default: the model's null class, unconditional).
  std::vector<std::string> classes;
  std::vector<std::string> negative_classes;
  // Text-to-image models: the prompt and what to steer away from, in A1111's
  // syntax ("(word:1.2)", "[word]", "BREAK"; the prompt's <lora:...> tags
  // add adapters, see Pipeline::prompt_loras); `clip_skip` N uses the text
  // encoder's N-th layer from the end, as A1111 counts (0: the family's own
  // choice, the last for SD 1.x, the penultimate for SD 2.x).
  std::string prompt, negative_prompt;
  int clip_skip = 0;
  // SDXL's size conditioning, in pixels: the size the model is told the
  // picture had before it was cropped, the crop's top-left corner, and the
  // size it is told to make. 0: the request's own size (and no crop), as
  // SDXL pipelines default.
  int64_t original_width = 0, original_height = 0, crop_top = 0, crop_left = 0, target_width = 0, target_height = 0;
  // Adapters run beside the model's layers for this generation only, with
  // those the prompt's tags name.
  std::vector<LoraRequest> loras;
  // img2img: the picture to start from (resized to the request's size), and
  // how much of the schedule runs on it: 0 returns it (through the VAE), 1
  // ignores it (txt2img from the same noise); the last floor(strength x
  // steps) steps of the schedule run, as diffusers counts them.
  std::optional<Image> init_image;
  double strength = 0.75;
  int64_t batch = 1;              // images per class, or per prompt
  int64_t width = 0, height = 0;  // pixels; 0: the model's trained size
  std::optional<int> steps;
  std::optional<Sampler> sampler;
  Scheduler scheduler = Scheduler::Default;
  std::optional<double> cfg_scale;  // 1 runs the conditional branch alone
  // Image i of the batch draws its noise from seed + i (A1111's convention), so
  // it can be made again alone.
  uint64_t seed = 42;
  // [images, channels, h, w] standard-normal noise to start from instead of
  // the seeded draw (the seeded streams still advance past it).
  std::optional<FloatTensor> initial_noise;
  bool profile = false;  // fill GenerationResult::profile
};

struct GenerationResult {
  std::vector<Image> images;
  // The A1111 "parameters" text of each image (its own seed), and of the
  // whole batch (every subject, the first seed) for a grid.
  std::vector<std::string> parameters;
  std::string batch_parameters;
  FloatTensor latents;  // the sampled latents, before the VAE decodes them
  double sampling_seconds = 0.0, decode_seconds = 0.0;
  std::string profile;  // time by op, program cache and arena, when asked
};

// What a loaded model is and what a request gets when it leaves a field unset.
struct ModelInfo {
  std::string path, family, description;
  std::vector<std::string> class_names;
  int64_t classes = 0;  // class-conditional models; 0 for others
  int64_t default_width = 0, default_height = 0, size_multiple = 0;  // pixels
  int64_t latent_channels = 0;
  bool latent = false;  // it makes latents for a VAE to decode, not pixels
  std::string prediction;  // "epsilon", "v", "flow"
  int default_steps = 0;
  Sampler default_sampler = Sampler::Euler;
  double default_cfg_scale = 0.0;
  std::string vae;  // the VAE's file, empty for a pixel-space model
  bool text = false;      // it reads a prompt
  bool size_conditioning = false;  // it reads the original size, crop and target size (SDXL)
  std::string tokenizer;  // where its vocabulary was found
};

// Called after each step with (done, total).
using ProgressCallback = std::function<void(int done, int total)>;

class Pipeline {
 public:
  // `path` is one safetensors file or a diffusers folder (model_index.json).
  static std::unique_ptr<Pipeline> load(const std::string& path, const LoadOptions& options = {});
  ~Pipeline();

  const ModelInfo& info() const;
  const Accelerator& accelerator() const;

  // The picture size a request gets, {height, width}; an Error when it is not
  // a positive multiple of ModelInfo::size_multiple.
  std::pair<int64_t, int64_t> image_size(const GenerationRequest& request) const;
  // [images, channels, h, w]: the latents a request samples, and the shape of
  // its initial noise.
  std::vector<int64_t> latent_shape(const GenerationRequest& request) const;
  // Class names or ids (or "all") to ids; an Error names what is unknown.
  std::vector<int64_t> class_ids(const std::vector<std::string>& items) const;

  // Several generations may run at once on different threads. Everything a run
  // needs is reserved against the memory limit before its first step. Setting
  // `cancel` stops the run within one model evaluation (Cancelled).
  GenerationResult generate(const GenerationRequest& request, const ProgressCallback& progress = {},
                            const std::atomic<bool>* cancel = nullptr) const;
  // The same for a caller that generates once (a command-line run): each
  // part's weights are freed as soon as the run is past it (the text encoder
  // once the prompt is encoded, the diffusion model before the VAE decodes),
  // so that the peak is the largest part's, not all of them together. Nothing
  // can run on the pipeline afterwards (an Error says so), whether or not the
  // generation succeeded.
  GenerationResult generate_and_release(const GenerationRequest& request, const ProgressCallback& progress = {},
                                        const std::atomic<bool>* cancel = nullptr);

  // One forward pass of a component ("diffusion_model", "vae_decoder"; empty:
  // the diffusion model) on named tensors: how to check a model against another
  // implementation. `runs` more timed runs fill `timing` (for benchmarks).
  struct ForwardTiming {
    double first_seconds = 0.0, median_seconds = 0.0, min_seconds = 0.0, max_seconds = 0.0;
    int64_t runs = 0, arena_bytes = 0;
    int64_t arena_without_reuse_bytes = 0;  // every intermediate in memory of its own
  };
  // Reads the adapter files (once: later generations reuse them) and matches
  // them to the model; an Error names the file and key that does not fit.
  void check_loras(const std::vector<LoraRequest>& loras) const;
  // The adapters a prompt's tags add to a generation's `loras`, as A1111
  // reads them: <lora:NAME>, <lora:NAME:TE>, <lora:NAME:TE:UNET>, with te=X
  // and unet=X overriding (the UNet's strength defaults to the text
  // encoder's, after te=), and <lyco:...> alike. NAME is looked up in the
  // LoRA folder (LoadOptions::lora_dir), and the files are checked as
  // check_loras does. The tags are removed from the prompt the text encoder
  // reads and kept in the parameters text; the negative prompt's stay text.
  // An Error names the tag: one A1111 would skip (another kind of network,
  // dyn=, an unknown setting), a strength that is not a finite number, a
  // NAME that the folder does not hold, or no folder.
  std::vector<LoraRequest> prompt_loras(const std::string& prompt) const;
  // The LoRA folder's adapters (none without one), read when first needed;
  // after refresh_lora_folder, the next use reads the folder again, and
  // adapter files read before (a file retrained under the same name).
  std::vector<LoraFolderEntry> lora_folder() const;
  void refresh_lora_folder() const;

  std::map<std::string, FloatTensor> forward(const std::string& component,
                                             const std::map<std::string, FloatTensor>& inputs, int runs = 0,
                                             ForwardTiming* timing = nullptr,
                                             const std::vector<LoraRequest>& loras = {}) const;

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  void require_weights() const;  // an Error once generate_and_release has run
  std::unique_ptr<Impl> impl_;
};

// What bakes adapters into a checkpoint when it is converted
// (ConvertOptions::updates): each adapter layer's update, added to the rows
// of the stored tensor that holds them before they are rounded or written.
// The model at `path` (a file or a diffusers folder) is loaded to learn where
// each layer is stored, then released. An Error names adapter keys that match
// no layer, as generating with them would.
std::map<std::pair<std::string, std::string>, ConvertOptions::RowsUpdate> lora_updates(
    const std::string& path, const std::vector<LoraRequest>& loras, const LoadOptions& options = {});

}  // namespace tiledraw
