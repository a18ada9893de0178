#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/prompt.h"
#include "text/tokenizer_source.h"
#include "tiledraw/convert.h"

// Expected ids were computed independently: by hand from the vocabulary and
// with a small Python model of the algorithm written for these tests.
namespace tiledraw::text {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// OpenAI's vocabulary and its Hugging Face layout, beside the checkout (never in it).
const std::string kClipData = TILEDRAW_SOURCE_DIR "/../shared/data/clip";
const std::string kOpenAiFile = kClipData + "/bpe_simple_vocab_16e6.txt.gz";
const std::string kHuggingFaceFolder = kClipData + "/hf";

const ClipTokenizer& clip() {
  static const ClipTokenizer tokenizer = load_clip_tokenizer(kOpenAiFile).tokenizer;
  return tokenizer;
}

std::vector<int32_t> chunk_ids(const TokenChunk& chunk) { return {chunk.ids.begin(), chunk.ids.end()}; }

// BOS, the ids, EOS, then `pad` to 77.
std::vector<int32_t> wrapped(std::vector<int32_t> ids, int32_t pad = kClipEndOfText) {
  ids.insert(ids.begin(), kClipStartOfText);
  ids.push_back(kClipEndOfText);
  ids.resize(kChunkLength, pad);
  return ids;
}

TEST(TokenizerVocabulary, TheRealVocabularyHasClipsSizeAndSpecialIds) {
  EXPECT_EQ(clip().vocabulary_size(), static_cast<size_t>(kClipVocabularySize));
  EXPECT_EQ(clip().start_of_text(), kClipStartOfText);
  EXPECT_EQ(clip().end_of_text(), kClipEndOfText);
  // The byte symbols come first, printable bytes first: '!' is 0, "a</w>" is 256 + 'a' - '!'.
  EXPECT_EQ(clip().token(0), "!");
  EXPECT_EQ(clip().token(320), "a</w>");
  EXPECT_EQ(clip().token(2368), "cat</w>");
}

TEST(TokenizerVocabulary, OpenAiAndHuggingFaceFilesGiveTheSameVocabularyAndIds) {
  const FoundTokenizer hf = load_clip_tokenizer(kHuggingFaceFolder);
  EXPECT_EQ(hf.source, kHuggingFaceFolder + "/vocab.json + merges.txt");
  EXPECT_EQ(hf.tokenizer.tokens_text(), clip().tokens_text());
  EXPECT_EQ(hf.tokenizer.merges_text(), clip().merges_text());
  for (const char* prompt : {"a photo of a cat", "Café naïve 東京, year 2024!!!", "rock'n'roll <|endoftext|>"}) {
    EXPECT_EQ(hf.tokenizer.encode(prompt), clip().encode(prompt)) << prompt;
  }
  EXPECT_EQ(load_clip_tokenizer(kHuggingFaceFolder + "/merges.txt").source, hf.source);
}

TEST(TokenizerVocabulary, LoadingOpenAisFileTakesTensOfMillisecondsAndA75TokenPromptWellUnderOne) {
  const auto start = std::chrono::steady_clock::now();
  const FoundTokenizer loaded = load_clip_tokenizer(kOpenAiFile);
  const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  // 75 different words of one token each (whole words of the vocabulary), so
  // that the word cache does not help the first pass.
  std::string prompt;
  int words = 0;
  for (int32_t id = 1000; words < 75; ++id) {
    const std::string word = loaded.tokenizer.token(id).substr(0, loaded.tokenizer.token(id).size() - 4);
    if (!loaded.tokenizer.token(id).ends_with("</w>") || !std::all_of(word.begin(), word.end(), ::isalpha)) continue;
    prompt += word + " ";
    ++words;
  }
  const auto first = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = loaded.tokenizer.encode(prompt);
  const double first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - first).count();
  const auto again = std::chrono::steady_clock::now();
  constexpr int kRepeats = 100;
  for (int i = 0; i < kRepeats; ++i) loaded.tokenizer.encode(prompt);
  const double cached_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - again).count() / kRepeats;
  std::printf("load %.1f ms; %zu tokens: %.3f ms uncached, %.3f ms cached\n", load_ms, ids.size(), first_ms, cached_ms);
  EXPECT_EQ(ids.size(), 75u);
  // Loose bounds: the machine is shared and the sanitizer builds run this too.
  EXPECT_LT(load_ms, 2000.0);
  EXPECT_LT(cached_ms, 5.0);
}

TEST(TokenizerEncode, KnownPromptsGiveTheirIds) {
  EXPECT_THAT(clip().encode("a photo of a cat"), ElementsAre(320, 1125, 539, 320, 2368));
  EXPECT_THAT(clip().encode("hello"), ElementsAre(3306));
  EXPECT_THAT(clip().encode("Москва"), ElementsAre(38018, 13506, 23669, 27152, 39813, 27080));
  EXPECT_THAT(clip().encode("Café naïve 東京"), ElementsAre(15304, 1097, 35689, 563, 48338, 21078, 361));
  EXPECT_THAT(clip().encode("Ünïcödé façade"), ElementsAre(6522, 77, 35689, 66, 7255, 67, 4166, 778, 10067, 1928));
  EXPECT_THAT(clip().encode(""), ElementsAre());
  EXPECT_THAT(clip().encode(" \t\n"), ElementsAre());
}

TEST(TokenizerEncode, ContractionsAreTheirOwnPieces) {
  EXPECT_THAT(clip().encode("it's they're we've I'll he'd"), ElementsAre(585, 568, 889, 982, 649, 1200, 328, 1342, 797, 1896));
  EXPECT_THAT(clip().encode("'s"), ElementsAre(568));
  // Only the listed endings: "'n" is punctuation and a letter.
  EXPECT_THAT(clip().encode("rock'n'roll"), ElementsAre(2172, 262, 333, 262, 3341));
  // Upper case is lowered first; the long s folds to s as the case-insensitive pattern reads it.
  EXPECT_EQ(clip().encode("IT'S"), clip().encode("it's"));
  EXPECT_THAT(clip().encode("it'\u017f"), ElementsAre(585, 6, 129, 379));
}

TEST(TokenizerEncode, DigitsAreSplitOneByOneAndPunctuationRunsStayTogether) {
  EXPECT_THAT(clip().encode("year 2024!!!"), ElementsAre(935, 273, 271, 273, 275, 995));
  EXPECT_THAT(clip().encode("wow?!... ok"), ElementsAre(2781, 9785, 678, 2481));
  EXPECT_THAT(clip().encode("ab,cd"), ElementsAre(3937, 267, 4480));
  // U+0345 folds to a letter, so the case-insensitive pattern matches it nowhere: it is dropped.
  EXPECT_THAT(clip().encode("a\u0345b !\u0345?"), ElementsAre(320, 321, 256, 286));
}

TEST(TokenizerEncode, SpecialTokensWrittenInTheTextAreThoseTokens) {
  EXPECT_THAT(clip().encode("x<|startoftext|>y"), ElementsAre(343, kClipStartOfText, 344));
  EXPECT_THAT(clip().encode("<|EndOfText|>"), ElementsAre(kClipEndOfText));
}

TEST(TokenizerCleanUp, HtmlIsUnescapedTwice) {
  EXPECT_EQ(clean_text("Tom &amp;amp; Jerry"), U"tom & jerry");
  EXPECT_EQ(clean_text("&amp;lt;b&amp;gt;"), U"<b>");
  EXPECT_EQ(clean_text("&#65;&#x42;&#X43&#100"), U"abcd");
  EXPECT_EQ(clean_text("&lt &ampx &notanentity; &hellip; &hellip &quot;"), U"< &x &notanentity; \u2026 &hellip \"");
  EXPECT_EQ(clean_text("&#0;&#128;&#1;&#xD800;&#x110000;"), U"\uFFFD\u20AC\uFFFD\uFFFD");
  EXPECT_EQ(clean_text("&nbsp;a&nbsp;"), U"a");  // a no-break space is white space
  EXPECT_EQ(clip().encode("cat &amp; dog"), clip().encode("cat & dog"));
}

TEST(TokenizerCleanUp, WhiteSpaceIsCollapsedAndStripped) {
  EXPECT_EQ(clean_text("  a \t\n\r b\u3000\u2003c  "), U"a b c");
  EXPECT_EQ(clip().encode("  a   photo\nof a\tcat "), clip().encode("a photo of a cat"));
}

TEST(TokenizerCleanUp, FullUnicodeLowerCase) {
  EXPECT_EQ(clean_text("ÀB Ω"), U"àb ω");
  EXPECT_EQ(clean_text("\u039f\u0394\u039f\u03a3"), U"\u03bf\u03b4\u03bf\u03c2");  // final sigma
  EXPECT_EQ(clean_text("\u0130"), U"i\u0307");  // İ lowers to two characters
}

TEST(TokenizerCleanUp, FtfyFixes) {
  EXPECT_EQ(clean_text("e\u0301"), U"\u00e9");                                         // NFC
  EXPECT_EQ(clean_text("\u201chi\u201d \u2018x\u2019 \u02bcy"), U"\"hi\" 'x' 'y");  // quotes
  EXPECT_EQ(clean_text("\ufb01sh \ufb04e \u0132"), U"fish ffle ij");                 // ligatures
  EXPECT_EQ(clean_text("\uff21\uff22\uff23\uff11"), U"abc1");                         // full width
  EXPECT_EQ(clean_text("a\u0007b\u007f\u0085c\ufeffd\u200b"), U"abcd\u200b");        // controls
  EXPECT_EQ(clean_text("a\xff" "b\xe2\x9c"), U"a\uFFFDb\uFFFD");                      // not UTF-8
  EXPECT_EQ(clip().encode("\u201ccat\u201d"), clip().encode("\"cat\""));
}

TEST(PromptWeights, TheWebUisDocumentedExamples) {
  EXPECT_THAT(parse_prompt_weights("normal text"), ElementsAre(PromptPiece{"normal text", 1.0}));
  EXPECT_THAT(parse_prompt_weights("an (important) word"),
              ElementsAre(PromptPiece{"an ", 1.0}, PromptPiece{"important", 1.1}, PromptPiece{" word", 1.0}));
  EXPECT_THAT(parse_prompt_weights("(unbalanced"), ElementsAre(PromptPiece{"unbalanced", 1.1}));
  EXPECT_THAT(parse_prompt_weights("\\(literal\\]"), ElementsAre(PromptPiece{"(literal]", 1.0}));
  EXPECT_THAT(parse_prompt_weights("(unnecessary)(parens)"), ElementsAre(PromptPiece{"unnecessaryparens", 1.1}));
  // house: 1.3 from its own bracket, 1.1 from the next, 1.1 from the one left open.
  const double open = 1.1, down = 1 / 1.1;
  EXPECT_THAT(parse_prompt_weights("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
              ElementsAre(PromptPiece{"a ", 1.0}, PromptPiece{"house", 1.3 * 1.1 * open}, PromptPiece{" ", open},
                          PromptPiece{"on", down * open}, PromptPiece{" a ", open}, PromptPiece{"hill", 0.5 * open},
                          PromptPiece{", sun, ", open}, PromptPiece{"sky", 1.1 * 1.1 * 1.1 * open},
                          PromptPiece{".", open}));
}

TEST(PromptWeights, BracketsWeightsAndEscapes) {
  EXPECT_THAT(parse_prompt_weights("(a:1.3)"), ElementsAre(PromptPiece{"a", 1.3}));
  EXPECT_THAT(parse_prompt_weights("( a : -0.5 )"), ElementsAre(PromptPiece{" a ", -0.5}));
  EXPECT_THAT(parse_prompt_weights("((a))"), ElementsAre(PromptPiece{"a", 1.1 * 1.1}));
  EXPECT_THAT(parse_prompt_weights("[a]"), ElementsAre(PromptPiece{"a", 1 / 1.1}));
  EXPECT_THAT(parse_prompt_weights("[[a]]"), ElementsAre(PromptPiece{"a", (1 / 1.1) * (1 / 1.1)}));
  EXPECT_THAT(parse_prompt_weights("((a:2) b)"), ElementsAre(PromptPiece{"a", 2 * 1.1}, PromptPiece{" b", 1.1}));
  // ([a]) is 1/1.1 * 1.1, exactly 1 in double precision, so it joins its neighbours.
  EXPECT_THAT(parse_prompt_weights("x ([a]) y"), ElementsAre(PromptPiece{"x a y", 1.0}));
  EXPECT_THAT(parse_prompt_weights("\\\\ \\[x\\) a\\b"), ElementsAre(PromptPiece{"\\ [x) ab", 1.0}));
  // Unmatched closers and colons that start no weight are text.
  EXPECT_THAT(parse_prompt_weights("a) b] c:d"), ElementsAre(PromptPiece{"a) b] c:d", 1.0}));
  EXPECT_THAT(parse_prompt_weights("a:1.3) b"), ElementsAre(PromptPiece{"a:1.3) b", 1.0}));
  EXPECT_THAT(parse_prompt_weights("(a:b)"), ElementsAre(PromptPiece{"a:b", 1.1}));
  EXPECT_THAT(parse_prompt_weights("(a:..)"), ElementsAre(PromptPiece{"a:..)", 1.1}));
  EXPECT_THAT(parse_prompt_weights("(a:\u0661.\u0665)"), ElementsAre(PromptPiece{"a", 1.5}));  // Arabic-Indic digits
  EXPECT_THAT(parse_prompt_weights(""), ElementsAre(PromptPiece{"", 1.0}));
  EXPECT_THAT(parse_prompt_weights("[(a"), ElementsAre(PromptPiece{"a", 1.1 * (1 / 1.1)}));  // round ones first
}

TEST(PromptWeights, BreakIsAnUpperCaseWordOfItsOwn) {
  const PromptPiece brk{"BREAK", 1.0, true};
  EXPECT_THAT(parse_prompt_weights("a  BREAK\tb"), ElementsAre(PromptPiece{"a", 1.0}, brk, PromptPiece{"b", 1.0}));
  EXPECT_THAT(parse_prompt_weights("BREAK"), ElementsAre(PromptPiece{"", 1.0}, brk, PromptPiece{"", 1.0}));
  EXPECT_THAT(parse_prompt_weights("a, BREAK, b"), ElementsAre(PromptPiece{"a,", 1.0}, brk, PromptPiece{", b", 1.0}));
  for (const char* not_a_break : {"a break b", "aBREAK b", "BREAKfast", "BREAK_x", "x2BREAK"}) {
    EXPECT_THAT(parse_prompt_weights(not_a_break), ElementsAre(PromptPiece{not_a_break, 1.0})) << not_a_break;
  }
  EXPECT_THAT(parse_prompt_weights("(a BREAK b)"), ElementsAre(PromptPiece{"a", 1.1}, PromptPiece{"BREAK", 1.1, true},
                                                               PromptPiece{"b", 1.1}));
}

TEST(PromptChunks, APromptIsWrappedAndPaddedPerFamily) {
  const std::vector<TokenChunk> sd1 = tokenize_prompt(clip(), "a photo of a cat", padding_id(ClipKind::OpenAiVitL14, clip()));
  ASSERT_EQ(sd1.size(), 1u);
  EXPECT_EQ(chunk_ids(sd1[0]), wrapped({320, 1125, 539, 320, 2368}));
  EXPECT_THAT(sd1[0].weights, ::testing::Each(1.0f));
  const std::vector<TokenChunk> sd2 = tokenize_prompt(clip(), "a photo of a cat", padding_id(ClipKind::OpenClipVitH14, clip()));
  EXPECT_EQ(chunk_ids(sd2[0]), wrapped({320, 1125, 539, 320, 2368}, 0));
  // An <|endoftext|> in the prompt ends the chunk for the padding too.
  EXPECT_EQ(chunk_ids(tokenize_prompt(clip(), "a <|endoftext|> cat", 0)[0]), wrapped({320}, 0));
}

TEST(PromptChunks, TheEmptyPromptIsOneChunk) {
  const std::vector<TokenChunk> chunks = tokenize_prompt(clip(), "", 0);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunk_ids(chunks[0]), wrapped({}, 0));
}

TEST(PromptChunks, WeightsFollowTheirTokens) {
  const TokenChunk chunk = tokenize_prompt(clip(), "a (cat:1.5) [photo]", kClipEndOfText)[0];
  EXPECT_EQ(chunk_ids(chunk), wrapped({320, 2368, 1125}));
  EXPECT_EQ(chunk.weights[0], 1.0f);
  EXPECT_EQ(chunk.weights[1], 1.0f);
  EXPECT_EQ(chunk.weights[2], 1.5f);
  EXPECT_EQ(chunk.weights[3], static_cast<float>(1 / 1.1));
  EXPECT_EQ(chunk.weights[4], 1.0f);
}

TEST(PromptChunks, LongPromptsTakeSeveralChunks) {
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += "cat ";
  const std::vector<TokenChunk> chunks = tokenize_prompt(clip(), prompt, kClipEndOfText);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunk_ids(chunks[0]), wrapped(std::vector<int32_t>(75, 2368)));
  EXPECT_EQ(chunk_ids(chunks[1]), wrapped(std::vector<int32_t>(25, 2368)));
  // Exactly 75 tokens fill one chunk; the 76th starts a second.
  prompt.clear();
  for (int i = 0; i < 75; ++i) prompt += "cat ";
  EXPECT_EQ(tokenize_prompt(clip(), prompt, 0).size(), 1u);
  EXPECT_EQ(tokenize_prompt(clip(), prompt + "cat", 0).size(), 2u);
}

TEST(PromptChunks, BreakStartsANewChunk) {
  const std::vector<TokenChunk> chunks = tokenize_prompt(clip(), "a photo BREAK of a cat", kClipEndOfText);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunk_ids(chunks[0]), wrapped({320, 1125}));
  EXPECT_EQ(chunk_ids(chunks[1]), wrapped({539, 320, 2368}));
  // A leading BREAK makes an empty chunk; a trailing one does not.
  EXPECT_EQ(tokenize_prompt(clip(), "BREAK cat", 0).size(), 2u);
  EXPECT_EQ(tokenize_prompt(clip(), "cat BREAK", 0).size(), 1u);
}

TEST(PromptChunks, AFullChunkEndsAfterACommaWithinItsLastTwentyTokens) {
  // 70 cats, a comma, 10 cats: the 76th token would overflow, so the chunk
  // ends after the comma and its last 4 cats move on.
  std::string prompt;
  for (int i = 0; i < 70; ++i) prompt += "cat ";
  prompt += ",";
  for (int i = 0; i < 10; ++i) prompt += " cat";
  std::vector<TokenChunk> chunks = tokenize_prompt(clip(), prompt, kClipEndOfText);
  ASSERT_EQ(chunks.size(), 2u);
  std::vector<int32_t> first(70, 2368);
  first.push_back(267);
  EXPECT_EQ(chunk_ids(chunks[0]), wrapped(first));
  EXPECT_EQ(chunk_ids(chunks[1]), wrapped(std::vector<int32_t>(10, 2368)));

  // A comma 21 tokens before the end is too far: no backtracking.
  prompt.clear();
  for (int i = 0; i < 54; ++i) prompt += "cat ";
  prompt += ",";
  for (int i = 0; i < 30; ++i) prompt += " cat";
  chunks = tokenize_prompt(clip(), prompt, kClipEndOfText);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].ids[55], 267);
  EXPECT_EQ(chunks[0].ids[75], 2368);
  EXPECT_EQ(chunk_ids(chunks[1]), wrapped(std::vector<int32_t>(10, 2368)));
}

TEST(PromptChunks, PaddingToAChunkCountAppendsEmptyPromptChunks) {
  std::vector<TokenChunk> chunks = tokenize_prompt(clip(), "cat", 0);
  pad_to_chunk_count(chunks, 3, clip(), 0);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunk_ids(chunks[0]), wrapped({2368}, 0));
  EXPECT_EQ(chunk_ids(chunks[1]), wrapped({}, 0));
  EXPECT_EQ(chunk_ids(chunks[2]), wrapped({}, 0));
  pad_to_chunk_count(chunks, 2, clip(), 0);
  EXPECT_EQ(chunks.size(), 3u);
}

// A home, a Hugging Face cache and the variables that point at them, all in a
// temporary folder, with nothing inherited from the machine.
class TokenizerSearchTest : public ::testing::Test {
 protected:
  TokenizerSearchTest() {
    env_.set("HOME", dir_.file("home"));
    for (const char* name : {"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "TILEDRAW_TOKENIZER"}) env_.set(name, nullptr);
  }
  // vocab.json and merges.txt (links to the real ones) in `folder`.
  std::string hugging_face_files(const fs::path& folder) {
    fs::create_directories(folder);
    fs::create_symlink(kHuggingFaceFolder + "/vocab.json", folder / "vocab.json");
    fs::create_symlink(kHuggingFaceFolder + "/merges.txt", folder / "merges.txt");
    return (folder / "vocab.json").string() + " + merges.txt";
  }
  std::string snapshot(const fs::path& hub, const std::string& repository_folder, const std::string& revision) {
    return hugging_face_files(hub / repository_folder / "snapshots" / revision);
  }
  std::string checkpoint(const fs::path& folder) {
    fs::create_directories(folder);
    const std::string path = (folder / "model.safetensors").string();
    test::write_random_safetensors(path, {{"w", {4}}}, {});
    return path;
  }
  test::TempDir dir_;
  test::ScopedEnvironment env_;
};

TEST_F(TokenizerSearchTest, EachPlaceIsFoundInItsTurn) {
  const fs::path root = dir_.path();
  const std::string model = checkpoint(root / "models");
  const std::string default_hub_snapshot = snapshot(root / "home/.cache/huggingface/hub",
                                                    "models--openai--clip-vit-large-patch14", "abc");
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source, default_hub_snapshot + " (Hugging Face cache)");

  const std::string xdg_snapshot = snapshot(root / "xdg/huggingface/hub", "models--openai--clip-vit-large-patch14", "x");
  env_.set("XDG_CACHE_HOME", (root / "xdg").string());
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source, xdg_snapshot + " (Hugging Face cache)");
  const std::string hf_home_snapshot = snapshot(root / "hf-home/hub", "models--openai--clip-vit-large-patch14", "y");
  env_.set("HF_HOME", (root / "hf-home").string());
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source, hf_home_snapshot + " (Hugging Face cache)");
  // Of several snapshots, the one refs/main names.
  const fs::path hub = root / "hub";
  snapshot(hub, "models--openai--clip-vit-large-patch14", "aaa");
  const std::string main_snapshot = snapshot(hub, "models--openai--clip-vit-large-patch14", "bbb");
  fs::create_directories(hub / "models--openai--clip-vit-large-patch14/refs");
  test::write_text((hub / "models--openai--clip-vit-large-patch14/refs/main").string(), "bbb");
  env_.set("HF_HUB_CACHE", hub.string());
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source, main_snapshot + " (Hugging Face cache)");
  // SD 2.x looks in OpenCLIP ViT-H's repository, which is not there yet.
  EXPECT_THROW(find_clip_tokenizer({model, "", ClipKind::OpenClipVitH14}), TokenizerNotFound);
  const std::string laion = snapshot(hub, "models--laion--CLIP-ViT-H-14-laion2B-s32B-b79K", "z");
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenClipVitH14}).source, laion + " (Hugging Face cache)");

  // Beside the checkpoint: a tokenizer/ folder, then the folder itself.
  const std::string beside_folder = hugging_face_files(root / "models/tokenizer");
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source, beside_folder + " (beside the checkpoint)");
  fs::create_symlink(kOpenAiFile, root / "models/bpe_simple_vocab_16e6.txt.gz");
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source,
            (root / "models/bpe_simple_vocab_16e6.txt.gz").string() + " (beside the checkpoint)");
  // A diffusers folder: its tokenizer/.
  const std::string diffusers_tokenizer = hugging_face_files(root / "diffusers/tokenizer");
  EXPECT_EQ(find_clip_tokenizer({(root / "diffusers").string(), "", ClipKind::OpenAiVitL14}).source,
            diffusers_tokenizer + " (beside the checkpoint)");

  env_.set("TILEDRAW_TOKENIZER", kOpenAiFile);
  EXPECT_EQ(find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14}).source, kOpenAiFile + " (TILEDRAW_TOKENIZER)");
  EXPECT_EQ(find_clip_tokenizer({model, kHuggingFaceFolder, ClipKind::OpenAiVitL14}).source,
            kHuggingFaceFolder + "/vocab.json + merges.txt");

  // Embedded in the model comes first of all.
  const std::string converted = (root / "converted.safetensors").string();
  ConvertOptions options;
  options.extra_tensors = embedded_tokenizer_tensors(clip());
  convert_to_8bit_s(model, converted, options);
  const FoundTokenizer embedded = find_clip_tokenizer({converted, kHuggingFaceFolder, ClipKind::OpenAiVitL14});
  EXPECT_EQ(embedded.source, "embedded in " + converted);
  EXPECT_EQ(embedded.tokenizer.encode("a photo of a cat"), clip().encode("a photo of a cat"));
}

TEST_F(TokenizerSearchTest, AnExplicitOrEnvironmentPathThatFailsIsAnError) {
  const std::string model = checkpoint(dir_.path() / "models");
  hugging_face_files(dir_.path() / "models");
  EXPECT_THROW(
      {
        try {
          find_clip_tokenizer({model, dir_.file("missing.gz"), ClipKind::OpenAiVitL14});
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr(dir_.file("missing.gz") + ": cannot open"));
          throw;
        }
      },
      Error);
  env_.set("TILEDRAW_TOKENIZER", model);
  try {
    find_clip_tokenizer({model, "", ClipKind::OpenAiVitL14});
    ADD_FAILURE() << "a model without a tokenizer in TILEDRAW_TOKENIZER was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("TILEDRAW_TOKENIZER: " + model + ": embeds no tokenizer"));
  }
}

TEST_F(TokenizerSearchTest, NothingFoundSaysWhichFileToGetAndWhereToPutIt) {
  const std::string model = checkpoint(dir_.path() / "models");
  for (ClipKind kind : {ClipKind::OpenAiVitL14, ClipKind::OpenClipVitH14}) {
    try {
      find_clip_tokenizer({model, "", kind});
      ADD_FAILURE() << "found a vocabulary where there is none";
    } catch (const TokenizerNotFound& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.find('\n'), std::string::npos);
      EXPECT_THAT(message, HasSubstr("get bpe_simple_vocab_16e6.txt.gz from github.com/openai/CLIP"));
      EXPECT_THAT(message, HasSubstr(kind == ClipKind::OpenAiVitL14 ? "vocab.json and merges.txt of huggingface.co/openai/clip-vit-large-patch14"
                                                                     : "huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K"));
      EXPECT_THAT(message, HasSubstr("put them in " + (dir_.path() / "models").string()));
      EXPECT_THAT(message, HasSubstr("set TILEDRAW_TOKENIZER"));
      EXPECT_THAT(message, HasSubstr(model + " embeds none"));
    }
  }
}

TEST(TokenizerEmbedded, RoundTripsThroughAFileAndRefusesBrokenOnes) {
  test::TempDir dir;
  write_safetensors(dir.file("t.safetensors"), embedded_tokenizer_tensors(clip()), {});
  const std::optional<ClipTokenizer> back = read_embedded_tokenizer(SafetensorsFile::open(dir.file("t.safetensors")));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->tokens_text(), clip().tokens_text());
  EXPECT_EQ(back->merges_text(), clip().merges_text());

  std::vector<TensorSource> only_tokens = embedded_tokenizer_tensors(clip());
  only_tokens.pop_back();
  write_safetensors(dir.file("half.safetensors"), std::move(only_tokens), {});
  EXPECT_THROW(read_embedded_tokenizer(SafetensorsFile::open(dir.file("half.safetensors"))), Error);

  const std::string tokens = clip().tokens_text();
  std::string merges = clip().merges_text();
  merges += "no_such_symbol x\n";
  try {
    ClipTokenizer::from_text(tokens, merges, "test");
    ADD_FAILURE() << "a merge of unknown symbols was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("test: merge 48895 uses 'no_such_symbol', which is not in the vocabulary"));
  }
}

// A vocabulary trained elsewhere (the bundled model's): CLIP's 512 byte
// symbols, two merges, the specials at 514 and 515.
TEST(PromptChunks, AVocabularyOfItsOwnPadsWithItsOwnEndOfText) {
  std::string tokens;
  std::istringstream clip_tokens(clip().tokens_text());
  std::string line;
  for (int i = 0; i < 512 && std::getline(clip_tokens, line); ++i) tokens += line + "\n";
  tokens += "ca\ncat</w>\n<|startoftext|>\n<|endoftext|>\n";
  const ClipTokenizer small = ClipTokenizer::from_text(tokens, "c a\nca t</w>\n", "small");
  ASSERT_EQ(small.vocabulary_size(), 516u);
  EXPECT_EQ(padding_id(ClipKind::OpenAiVitL14, small), 515);
  EXPECT_EQ(padding_id(ClipKind::OpenClipVitH14, small), 0);
  std::vector<int32_t> expected(kChunkLength, 515);
  expected[0] = 514;
  expected[1] = 513;
  EXPECT_EQ(chunk_ids(tokenize_prompt(small, "cat", padding_id(ClipKind::OpenAiVitL14, small))[0]), expected);
}

TEST(TokenizerVocabulary, BrokenFilesAreRefusedByName) {
  test::TempDir dir;
  test::write_text(dir.file("vocab.json"), "[1, 2]");
  test::write_text(dir.file("merges.txt"), "#version: 0.2\na b\n");
  EXPECT_THROW(load_clip_tokenizer(dir.file("vocab.json")), Error);
  test::write_text(dir.file("notes.txt"), "hello");
  try {
    load_clip_tokenizer(dir.file("notes.txt"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir.file("notes.txt") + ": not a CLIP vocabulary"));
  }
  test::write_text(dir.file("short.txt"), "#version: 0.2\ni n\nt h\n");
  try {
    load_clip_tokenizer(dir.file("short.txt"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds 2 merges after its header; CLIP's vocabulary needs 48894"));
  }
}

}  // namespace
}  // namespace tiledraw::text
