#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "pipeline/lora_folder.h"
#include "pipeline/lora_prompt.h"
#include "test_util.h"
#include "tiledraw/pipeline.h"

namespace tiledraw {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::ThrowsMessage;

struct Strengths {
  std::string name;
  double text, unet;
  bool operator==(const Strengths&) const = default;
};

std::vector<Strengths> strengths_of(const std::string& prompt) {
  std::vector<Strengths> out;
  for (const pipeline::LoraTag& tag : pipeline::parse_lora_tags(prompt).tags)
    out.push_back({tag.name, tag.text_strength, tag.unet_strength});
  return out;
}

// A1111's rules (1.5 and later): positional TE then UNET, the UNet's default
// the text encoder's after te=, named items override, lyco is lora.
TEST(LoraPrompt, ReadsStrengthsAsA1111Does) {
  EXPECT_THAT(strengths_of("<lora:style>"), ElementsAre(Strengths{"style", 1, 1}));
  EXPECT_THAT(strengths_of("<lora:style:0.8>"), ElementsAre(Strengths{"style", 0.8, 0.8}));
  EXPECT_THAT(strengths_of("<lora:style:0.5:0.25>"), ElementsAre(Strengths{"style", 0.5, 0.25}));
  EXPECT_THAT(strengths_of("<lora:style:te=0.3>"), ElementsAre(Strengths{"style", 0.3, 0.3})) << "unet follows te=";
  EXPECT_THAT(strengths_of("<lora:style:1:te=0>"), ElementsAre(Strengths{"style", 0, 0}));
  EXPECT_THAT(strengths_of("<lora:style:0:0.8>"), ElementsAre(Strengths{"style", 0, 0.8}));
  EXPECT_THAT(strengths_of("<lora:style:te=0:unet=0.8>"), ElementsAre(Strengths{"style", 0, 0.8}));
  EXPECT_THAT(strengths_of("<lora:style:unet=0.2:0.7>"), ElementsAre(Strengths{"style", 0.7, 0.2}));
  EXPECT_THAT(strengths_of("<lora:te=0.5:style>"), ElementsAre(Strengths{"style", 0.5, 0.5}))
      << "the name is the first positional item";
  EXPECT_THAT(strengths_of("<lora:style:0.5:0.5:unet=-1>"), ElementsAre(Strengths{"style", 0.5, -1}));
  EXPECT_THAT(strengths_of("<lora:style: +1e-1 :-.5 >"), ElementsAre(Strengths{"style", 0.1, -0.5})) << "float() allows spaces";
  EXPECT_THAT(strengths_of("<lyco:style:0.6>"), ElementsAre(Strengths{"style", 0.6, 0.6}));
  EXPECT_THAT(strengths_of("<lora:My Style (v2):1>"), ElementsAre(Strengths{"My Style (v2)", 1, 1}));
  EXPECT_THAT(strengths_of("<lora:a:0.5>, <lora:b:0.25>"), ElementsAre(Strengths{"a", 0.5, 0.5}, Strengths{"b", 0.25, 0.25}));
}

TEST(LoraPrompt, RemovesEachTagAndLeavesWhatIsNotOne) {
  const pipeline::TaggedPrompt tagged = pipeline::parse_lora_tags("a <lora:style:0.8>white (sneaker:1.2)<lyco:b>, BREAK red");
  EXPECT_EQ(tagged.text, "a white (sneaker:1.2), BREAK red");
  ASSERT_EQ(tagged.tags.size(), 2u);
  EXPECT_EQ(tagged.tags[0].text, "<lora:style:0.8>");
  EXPECT_EQ(tagged.tags[1].text, "<lyco:b>");
  for (const std::string text : {"i <3 cats", "a < b > c", "<:style>", "<lora style>", "<lora>", "(a:1.2) <", "x <- y: z"}) {
    const pipeline::TaggedPrompt plain = pipeline::parse_lora_tags(text);
    EXPECT_EQ(plain.text, text);
    EXPECT_TRUE(plain.tags.empty()) << text;
  }
  EXPECT_EQ(pipeline::parse_lora_tags("<<lora:style>>").text, "<>");
}

TEST(LoraPrompt, AMalformedTagIsAnErrorNamingIt) {
  const auto error = [](const std::string& prompt) {
    try {
      pipeline::parse_lora_tags(prompt);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error("a <lora:style:abc> b"), "<lora:style:abc>: the text encoder's strength 'abc' is not a number");
  EXPECT_EQ(error("<lora:style:1:x>"), "<lora:style:1:x>: the UNet's strength 'x' is not a number");
  EXPECT_EQ(error("<lora:style:inf>"), "<lora:style:inf>: the text encoder's strength 'inf' is not a finite number");
  EXPECT_EQ(error("<lora:style:unet=nan>"), "<lora:style:unet=nan>: unet 'nan' is not a finite number");
  EXPECT_EQ(error("<lora:style:te=1e999>"), "<lora:style:te=1e999>: te '1e999' is out of range");
  EXPECT_EQ(error("<lora:style:te=>"), "<lora:style:te=>: te '' is not a number");
  EXPECT_EQ(error("<lora:style:0x10>"), "<lora:style:0x10>: the text encoder's strength '0x10' is not a number");
  EXPECT_EQ(error("<lora:style:a=b=c>"), "<lora:style:a=b=c>: the text encoder's strength 'a=b=c' is not a number");
  EXPECT_EQ(error("<lora::1>"), "<lora::1>: names no adapter");
  EXPECT_EQ(error("<lora:te=1>"), "<lora:te=1>: names no adapter");
  EXPECT_EQ(error("<lora:>"), "<lora:>: names no adapter");
  EXPECT_EQ(error("a <lora:style:0.8"), "'<lora:style:0.8' has no closing '>'");
  EXPECT_EQ(error("<lyco:style, a very long prompt that goes on and on"),
            "'<lyco:style, a very long prompt that goe...' has no closing '>'");
  EXPECT_EQ(error("<lora:style:1:1:8>"), "<lora:style:1:1:8>: a fourth value (DyLoRA's rank cut) is not supported");
  EXPECT_EQ(error("<lora:style:dyn=8>"), "<lora:style:dyn=8>: dyn= (DyLoRA's rank cut) is not supported");
  EXPECT_EQ(error("<lora:style:weight=1>"), "<lora:style:weight=1>: unknown setting 'weight=1' (te= and unet= are read)");
  EXPECT_EQ(
      error("<hypernet:style:1>"),
      "<hypernet:style:1>: an extra network of kind 'hypernet'; only LoRA tags are read (<lora:NAME:STRENGTH>, or <lyco:...>)");
  EXPECT_EQ(error("<LORA:style>"),
            "<LORA:style>: an extra network of kind 'LORA'; only LoRA tags are read (<lora:NAME:STRENGTH>, or <lyco:...>)");
}

std::string found(const pipeline::LoraFolder& folder, const std::string& name) {
  try {
    return std::filesystem::relative(folder.find({"<lora:" + name + ">", name, 1, 1}), folder.path()).string();
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(LoraFolder, FindsAFileByNameOrAliasAsA1111Does) {
  test::TempDir dir;
  const std::string root = dir.path().string();
  test::write_bundled_model_lora(dir.file("style.safetensors"), {{"ss_output_name", "fancy"}, {"ss_network_dim", "4"}});
  test::write_bundled_model_lora(dir.file("sub/deep/detail.SAFETENSORS"), {});
  test::write_bundled_model_lora(dir.file("one.safetensors"), {{"ss_output_name", "shared"}});
  test::write_bundled_model_lora(dir.file("two.safetensors"), {{"ss_output_name", "shared"}});
  test::write_bundled_model_lora(dir.file("three.safetensors"), {{"ss_output_name", "style"}});  // another file's name
  test::write_bundled_model_lora(dir.file(".hidden/secret.safetensors"), {});
  test::write_bundled_model_lora(dir.file("a/twin.safetensors"), {});
  test::write_bundled_model_lora(dir.file("b/twin.safetensors"), {});
  test::write_text(dir.file("notes.txt"), "not an adapter");
  test::write_text(dir.file("broken.safetensors"), "not a safetensors file");
  std::filesystem::create_directory_symlink("..", dir.file("sub/up"));  // a loop, followed once

  const pipeline::LoraFolder folder(root);
  std::vector<std::string> names, aliases;
  for (const LoraFolderEntry& entry : folder.entries()) {
    names.push_back(std::filesystem::relative(entry.path, root).string());
    aliases.push_back(entry.alias);
  }
  EXPECT_THAT(names, ElementsAre("a/twin.safetensors", "b/twin.safetensors", "broken.safetensors", "one.safetensors",
                                 "style.safetensors", "sub/deep/detail.SAFETENSORS", "three.safetensors", "two.safetensors"));
  EXPECT_THAT(aliases, ElementsAre("twin", "twin", "broken", "shared", "fancy", "detail", "style", "shared"));
  const LoraFolderEntry style = folder.entries()[4];
  EXPECT_EQ(style.name, "style");
  EXPECT_EQ(style.metadata.at("ss_network_dim"), "4");

  EXPECT_EQ(found(folder, "style"), "style.safetensors") << "a name before another file's alias";
  EXPECT_EQ(found(folder, "fancy"), "style.safetensors");
  EXPECT_EQ(found(folder, "detail"), "sub/deep/detail.SAFETENSORS");
  EXPECT_EQ(found(folder, "three"), "three.safetensors");
  EXPECT_EQ(found(folder, "broken"), "broken.safetensors") << "listed; reading it for a generation says what is wrong";
  EXPECT_EQ(found(folder, "shared"), "<lora:shared>: 'shared' is the ss_output_name of 2 files of the LoRA folder (" +
                                         dir.file("one.safetensors") + ", " + dir.file("two.safetensors") +
                                         "); name one by its file name");
  EXPECT_EQ(found(folder, "twin"), "<lora:twin>: 2 files of the LoRA folder " + root + " are named 'twin': " +
                                       dir.file("a/twin.safetensors") + ", " + dir.file("b/twin.safetensors"));
  const std::string missing = " in the LoRA folder " + root + " (by file name without .safetensors, or by ss_output_name)";
  EXPECT_EQ(found(folder, "Style"), "<lora:Style>: no adapter named 'Style'" + missing) << "names are case-sensitive";
  EXPECT_EQ(found(folder, "secret"), "<lora:secret>: no adapter named 'secret'" + missing) << "hidden folders are left out";
  EXPECT_EQ(found(folder, "notes"), "<lora:notes>: no adapter named 'notes'" + missing);
}

TEST(LoraFolder, KeepsItsListingUntilRefreshed) {
  test::TempDir dir;
  const pipeline::LoraFolder folder(dir.path().string());
  EXPECT_TRUE(folder.entries().empty());
  test::write_bundled_model_lora(dir.file("new.safetensors"), {});
  EXPECT_THAT(found(folder, "new"), HasSubstr("no adapter named 'new'")) << "the listing read before the file came";
  const_cast<pipeline::LoraFolder&>(folder).refresh();
  EXPECT_EQ(found(folder, "new"), "new.safetensors");

  EXPECT_THAT([&] { pipeline::LoraFolder(dir.file("missing")); },
              ThrowsMessage<Error>("the LoRA folder " + dir.file("missing") + " does not exist"));
  EXPECT_THAT([&] { pipeline::LoraFolder(dir.file("new.safetensors")); },
              ThrowsMessage<Error>("the LoRA folder " + dir.file("new.safetensors") + " is not a folder"));
}

// Through the library: a tag is the adapter at its strengths, the same as a
// request's own, and the prompt the text encoder reads is without it.
class LoraTags : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new test::TempDir();
    test::write_bundled_model_lora(folder_->file("style.safetensors"), {{"ss_output_name", "fancy"}});
    test::write_bundled_model_lora(folder_->file("parts/unet-part.safetensors"), {}, false);
    LoadOptions options;
    options.lora_dir = folder_->path().string();
    pipeline_ = Pipeline::load(model_path(), options).release();
  }
  static void TearDownTestSuite() {
    delete pipeline_;
    delete folder_;
  }
  static std::string model_path() { return std::string(TILEDRAW_SOURCE_DIR) + "/models/fashion-sd-8bit-s.safetensors"; }
  static std::string style() { return folder_->file("style.safetensors"); }

  static GenerationResult generate(const std::string& prompt, std::vector<LoraRequest> loras = {}) {
    GenerationRequest request;
    request.prompt = prompt;
    request.loras = std::move(loras);
    request.steps = 3;
    request.seed = 5;
    return pipeline_->generate(request);
  }
  static std::vector<float> latents(const std::string& prompt, std::vector<LoraRequest> loras = {}) {
    return generate(prompt, std::move(loras)).latents.data;
  }

  static test::TempDir* folder_;
  static Pipeline* pipeline_;
};
test::TempDir* LoraTags::folder_ = nullptr;
Pipeline* LoraTags::pipeline_ = nullptr;

TEST_F(LoraTags, ATagIsItsAdapterAtItsStrengthsAndLeavesThePrompt) {
  const std::vector<float> none = latents("a white sneaker");
  const std::vector<float> flagged = latents("a white sneaker", {{style(), 0.8, 0.8}});
  ASSERT_NE(flagged, none) << "the adapter must change the picture for this test to mean anything";
  EXPECT_EQ(latents("a white sneaker <lora:style:0.8>"), flagged);
  EXPECT_EQ(latents("a <lora:fancy:0.8>white sneaker"), flagged) << "by its alias, anywhere in the prompt";
  EXPECT_EQ(latents("<lyco:style:te=0.8>a white sneaker"), flagged);
  EXPECT_EQ(latents("a white sneaker <lora:style:0.4>", {{style(), 0.4, 0.4}}), flagged)
      << "a request's own and its tags' add up";

  // te=0 leaves the text encoder alone: the same as a file with the UNet's layers only.
  const std::vector<float> unet_side = latents("a white sneaker", {{folder_->file("parts/unet-part.safetensors"), 0.8, 0.8}});
  EXPECT_NE(unet_side, none);
  EXPECT_NE(unet_side, flagged);
  EXPECT_EQ(latents("a white sneaker <lora:style:te=0:unet=0.8>"), unet_side);
  EXPECT_EQ(latents("a white sneaker <lora:style:0:0.8>"), unet_side);
  const std::vector<float> text_side = latents("a white sneaker <lora:style:0.8:0>");
  EXPECT_NE(text_side, none);
  EXPECT_NE(text_side, unet_side);
  EXPECT_EQ(latents("a white sneaker", {{style(), 0.0, 0.8}}), text_side);
  EXPECT_EQ(latents("a white sneaker <lora:style:te=0>"), none) << "A1111: the UNet's strength follows te=";

  // The parameters text keeps the prompt as written, as A1111's does.
  EXPECT_THAT(generate("a white sneaker <lora:style:0.8>").parameters[0],
              StartsWith("a white sneaker <lora:style:0.8>\nSteps: 3"));
}

TEST_F(LoraTags, TheNegativePromptsTagsAreText) {
  GenerationRequest request;
  request.prompt = "a white sneaker";
  request.negative_prompt = "<lora:nothing:1>";
  request.steps = 1;
  const GenerationResult result = pipeline_->generate(request);
  EXPECT_THAT(result.parameters[0], HasSubstr("\nNegative prompt: <lora:nothing:1>\n"));
}

TEST_F(LoraTags, PromptLorasNamesTheFilesAndRefusesWhatCannotRun) {
  const std::vector<LoraRequest> loras = pipeline_->prompt_loras("<lora:fancy:0.5:0.25> a <lora:unet-part>");
  ASSERT_EQ(loras.size(), 2u);
  EXPECT_EQ(loras[0].path, style());
  EXPECT_EQ(loras[0].text_strength, 0.5);
  EXPECT_EQ(loras[0].unet_strength, 0.25);
  EXPECT_EQ(loras[1].path, folder_->file("parts/unet-part.safetensors"));
  EXPECT_EQ(loras[1].text_strength, 1.0);

  EXPECT_THAT([&] { pipeline_->prompt_loras("a <lora:nothing:1>"); },
              ThrowsMessage<Error>("<lora:nothing:1>: no adapter named 'nothing' in the LoRA folder " + folder_->path().string() +
                                   " (by file name without .safetensors, or by ss_output_name)"));
  EXPECT_THAT([&] { generate("a <lora:style:1:1:4>"); }, ThrowsMessage<Error>(HasSubstr("<lora:style:1:1:4>: a fourth value")));
  // A file of the folder that is not an adapter of this model.
  test::write_random_safetensors(
      folder_->file("other.safetensors"),
      {{"lora_unet_nothing_here.lora_down.weight", {4, 8}}, {"lora_unet_nothing_here.lora_up.weight", {8, 4}}}, {});
  pipeline_->refresh_lora_folder();
  EXPECT_THAT([&] { pipeline_->prompt_loras("<lora:other>"); },
              ThrowsMessage<Error>(HasSubstr("1 of 1 LoRA layers match no layer of")));
  EXPECT_EQ(pipeline_->lora_folder().size(), 3u);

  const auto without_folder = Pipeline::load(model_path());
  EXPECT_TRUE(without_folder->lora_folder().empty());
  EXPECT_THAT([&] { without_folder->prompt_loras("a <lora:style:0.8>"); },
              ThrowsMessage<Error>("<lora:style:0.8>: no LoRA folder is set to look 'style' up in"));
  EXPECT_TRUE(without_folder->prompt_loras("a white sneaker").empty());
}

// Files are read once; refreshing the folder reads them again, as a file
// retrained under the same name needs.
TEST(LoraFolderRefresh, ReadsChangedFilesAgain) {
  test::TempDir dir;
  const std::string lora = dir.file("style.safetensors");
  test::write_bundled_model_lora(lora, {});
  LoadOptions options;
  options.lora_dir = dir.path().string();
  const auto pipeline = Pipeline::load(std::string(TILEDRAW_SOURCE_DIR) + "/models/fashion-sd-8bit-s.safetensors", options);
  GenerationRequest request;
  request.prompt = "a bag <lora:style>";
  request.steps = 2;
  const std::vector<float> first = pipeline->generate(request).latents.data;
  test::write_random_safetensors(
      lora,
      {{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", {4, 64}},
       {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", {64, 4}}},
      {}, 9, 0.5f);
  EXPECT_EQ(pipeline->generate(request).latents.data, first) << "the file as first read";
  pipeline->refresh_lora_folder();
  EXPECT_NE(pipeline->generate(request).latents.data, first) << "the file as it is now";
}

}  // namespace
}  // namespace tiledraw
