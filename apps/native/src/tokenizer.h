// The BERT WordPiece tokenizer of a Hugging Face tokenizer.json, id for id: added (special) tokens matched in the
// raw text, BertNormalizer (clean_text, handle_chinese_chars, strip_accents, lowercase), BertPreTokenizer,
// WordPiece ([UNK], "##", max_input_chars_per_word), "longest_first" truncation and TemplateProcessing.
// Unicode data (NFD, general categories, case mapping) comes from utf8proc. Anything else is refused.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace se {

class Tokenizer {
 public:
  // Throws se::Error: SE_ERR_IO / SE_ERR_FORMAT for an unreadable file, SE_ERR_UNSUPPORTED for another kind.
  static Tokenizer from_file(const std::string& tokenizer_json_path, size_t max_length);

  // [CLS] text [SEP] (pair [SEP]), truncated to max_length ids. pair may be NULL. Invalid UTF-8 -> SE_ERR_ARGUMENT.
  std::vector<int64_t> encode(const std::string& text, const std::string* pair) const;
  // The word pieces of one text, before truncation and special tokens (for tests and tools).
  std::vector<int64_t> tokenize(const std::string& text) const;
  size_t max_length() const { return max_length_; }

 private:
  struct AddedToken {
    std::u32string content;
    int64_t id;
  };
  struct Piece {  // one element of a TemplateProcessing template
    int sequence;  // 0 = A, 1 = B, -1 = special token
    std::vector<int64_t> ids;
  };

  std::u32string normalize(const std::u32string& text) const;
  void word_piece(const std::u32string& word, std::vector<int64_t>& out) const;
  std::vector<int64_t> apply_template(const std::vector<Piece>& tpl, const std::vector<int64_t>& a,
                                      const std::vector<int64_t>* b) const;

  bool clean_text_ = true, handle_chinese_chars_ = true, strip_accents_ = true, lowercase_ = true;
  std::unordered_map<std::string, int64_t> vocab_;
  int64_t unk_id_ = 0;
  std::string prefix_ = "##";
  size_t max_input_chars_per_word_ = 100;
  std::vector<AddedToken> added_;  // longest first
  std::vector<Piece> single_, pair_;
  size_t max_length_ = 0;
};

}  // namespace se
