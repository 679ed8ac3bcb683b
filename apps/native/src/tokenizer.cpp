#include "tokenizer.h"

#include <unicode/uchar.h>
#include <utf8proc.h>

#include <algorithm>
#include <memory>

#include "error.h"
#include "util.h"

namespace se {

namespace {

std::u32string decode_utf8(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0 || cp < 0) fail(SE_ERR_ARGUMENT, "bad_utf8", "text is not valid UTF-8");
    out.push_back(static_cast<char32_t>(cp));
    p += n;
    left -= n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string encode_utf8(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// The HF tokenizers read general categories from the `unicode_categories` crate, whose tables are Unicode 8.0:
// a character assigned later (a newer combining mark, punctuation or format character) is, to them, an ordinary
// character. Measured over every code point of planes 0-3 and 14 against the fast tokenizer. So the category of a
// character newer than 8.0 (its Unicode age, from ICU) counts as unassigned; utf8proc (Unicode 15) gives the rest.
bool in_unicode_8(char32_t c) {
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(c), age);
  return age[0] < 8 || (age[0] == 8 && age[1] == 0 && age[2] == 0 && age[3] == 0);
}

utf8proc_category_t category(char32_t c) {
  if (c < 0x80) return utf8proc_category(static_cast<utf8proc_int32_t>(c));
  if (!in_unicode_8(c)) return UTF8PROC_CATEGORY_CN;
  // The six characters of Unicode 8.0 whose category changed by Unicode 15 in a way the tokenizer sees (found by
  // the same exhaustive comparison): their 8.0 category. Listed by hand because no library carries old categories.
  switch (c) {
    case 0x166D: return UTF8PROC_CATEGORY_PO;  // CANADIAN SYLLABICS CHI SIGN, So since 12.0
    case 0x111C9: return UTF8PROC_CATEGORY_PO;  // SHARADA SANDHI MARK, Mn since 11.0
    case 0x1734: return UTF8PROC_CATEGORY_MN;  // HANUNOO SIGN PAMUDPOD, Mc since 14.0
    case 0xA9BD: return UTF8PROC_CATEGORY_MC;  // JAVANESE CONSONANT SIGN KERET, Mn since 12.0
    case 0x1885:
    case 0x1886: return UTF8PROC_CATEGORY_LO;  // MONGOLIAN ALI GALI BALUDA signs, Mn since 9.0
    default: return utf8proc_category(static_cast<utf8proc_int32_t>(c));
  }
}

// Rust's char::is_whitespace (the Unicode White_Space property), which the HF tokenizers use. utf8proc has no
// White_Space property, and the set is small and fixed, so it is listed here.
bool is_white_space_property(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// tokenizers' bert.rs: Cc, Cf, Cs, Co except \t \n \r. Its comment says Cn too, but measured against the HF
// fast tokenizer an unassigned code point is kept as an ordinary character (an [UNK] word), not removed.
bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
      return true;
    default:
      return false;
  }
}

bool is_chinese_char(char32_t c) {  // the CJK ranges of BERT's tokenization.py / tokenizers' bert.rs
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_punctuation(char32_t c) {  // BertPreTokenizer: ASCII punctuation or any Unicode P* category
  if (c < 128) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

const nlohmann::json& field(const nlohmann::json& doc, const char* key) {
  static const nlohmann::json null;
  auto it = doc.find(key);
  return it == doc.end() ? null : *it;
}

[[noreturn]] void unsupported(const std::string& what) {
  fail(SE_ERR_UNSUPPORTED, "unsupported_tokenizer",
       "tokenizer.json: " + what + "; this runtime implements BertNormalizer + BertPreTokenizer + WordPiece");
}

bool flag(const nlohmann::json& doc, const char* key, bool dflt) {
  const nlohmann::json& v = field(doc, key);
  if (v.is_null()) return dflt;
  if (!v.is_boolean()) fail(SE_ERR_FORMAT, "bad_field", std::string("tokenizer.json: ") + key + " is not a bool");
  return v.get<bool>();
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path, size_t max_length) {
  json doc = parse_json(read_text(path), path);
  if (!doc.is_object()) fail(SE_ERR_FORMAT, "bad_field", path + " is not a JSON object");
  Tokenizer t;
  t.max_length_ = max_length;

  const json& norm = field(doc, "normalizer");
  if (!norm.is_object() || field(norm, "type") != "BertNormalizer")
    unsupported("normalizer " + norm.dump().substr(0, 80));
  t.clean_text_ = flag(norm, "clean_text", true);
  t.handle_chinese_chars_ = flag(norm, "handle_chinese_chars", true);
  t.lowercase_ = flag(norm, "lowercase", true);
  t.strip_accents_ = flag(norm, "strip_accents", t.lowercase_);  // null: follows lowercase, as in HF

  const json& pre = field(doc, "pre_tokenizer");
  if (!pre.is_object() || field(pre, "type") != "BertPreTokenizer")
    unsupported("pre_tokenizer " + pre.dump().substr(0, 80));

  const json& model = field(doc, "model");
  if (!model.is_object() || field(model, "type") != "WordPiece") unsupported("model is not WordPiece");
  const json& vocab = field(model, "vocab");
  if (!vocab.is_object() || vocab.empty()) fail(SE_ERR_FORMAT, "bad_field", path + ": WordPiece has no vocab");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) fail(SE_ERR_FORMAT, "bad_field", path + ": vocab ids must be integers");
    t.vocab_[it.key()] = it.value().get<int64_t>();
  }
  const json& unk = field(model, "unk_token");
  if (!unk.is_string() || !t.vocab_.count(unk.get<std::string>()))
    fail(SE_ERR_FORMAT, "bad_field", path + ": unk_token is missing from the vocab");
  t.unk_id_ = t.vocab_[unk.get<std::string>()];
  if (field(model, "continuing_subword_prefix").is_string())
    t.prefix_ = field(model, "continuing_subword_prefix").get<std::string>();
  if (field(model, "max_input_chars_per_word").is_number_integer())
    t.max_input_chars_per_word_ = field(model, "max_input_chars_per_word").get<size_t>();

  const json& added = field(doc, "added_tokens");
  if (added.is_array()) {
    for (const json& a : added) {
      if (!a.is_object() || !field(a, "content").is_string() || !field(a, "id").is_number_integer())
        fail(SE_ERR_FORMAT, "bad_field", path + ": bad added_tokens entry");
      // Only the plain form: matched as is in the raw text. lstrip/rstrip/single_word/normalized change the
      // matching rules, which this runtime does not implement.
      if (flag(a, "lstrip", false) || flag(a, "rstrip", false) || flag(a, "single_word", false) ||
          flag(a, "normalized", false))
        unsupported("added token " + field(a, "content").get<std::string>() +
                    " with lstrip/rstrip/single_word/normalized");
      std::u32string content = decode_utf8(field(a, "content").get<std::string>());
      if (!content.empty()) t.added_.push_back({content, field(a, "id").get<int64_t>()});
    }
  }
  std::stable_sort(t.added_.begin(), t.added_.end(),
                   [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); });

  const json& post = field(doc, "post_processor");
  auto special_ids = [&](const std::string& name) -> std::vector<int64_t> {
    if (!t.vocab_.count(name)) fail(SE_ERR_FORMAT, "bad_field", path + ": special token " + name + " not in vocab");
    return {t.vocab_[name]};
  };
  if (post.is_object() && field(post, "type") == "TemplateProcessing") {
    const json& specials = field(post, "special_tokens");
    auto parse_tpl = [&](const json& tpl, std::vector<Piece>& out) {
      if (!tpl.is_array()) unsupported("TemplateProcessing template is not a list");
      for (const json& p : tpl) {
        if (p.contains("Sequence")) {
          std::string id = field(p["Sequence"], "id").is_string() ? p["Sequence"]["id"].get<std::string>() : "";
          if (id != "A" && id != "B") unsupported("template sequence " + id);
          out.push_back({id == "A" ? 0 : 1, {}});
        } else if (p.contains("SpecialToken")) {
          std::string id = field(p["SpecialToken"], "id").is_string() ? p["SpecialToken"]["id"].get<std::string>() : "";
          const json& s = field(specials, id.c_str());
          if (!s.is_object() || !field(s, "ids").is_array())
            fail(SE_ERR_FORMAT, "bad_field", path + ": template names unknown special token " + id);
          out.push_back({-1, s["ids"].get<std::vector<int64_t>>()});
        } else {
          unsupported("template piece " + p.dump().substr(0, 60));
        }
      }
    };
    parse_tpl(field(post, "single"), t.single_);
    parse_tpl(field(post, "pair"), t.pair_);
  } else if (post.is_object() && field(post, "type") == "BertProcessing") {
    auto id_of = [&](const char* key) {
      const json& v = field(post, key);
      if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer()) unsupported("BertProcessing without " +
                                                                                   std::string(key));
      return std::vector<int64_t>{v[1].get<int64_t>()};
    };
    auto cls = id_of("cls"), sep = id_of("sep");
    t.single_ = {{-1, cls}, {0, {}}, {-1, sep}};
    t.pair_ = {{-1, cls}, {0, {}}, {-1, sep}, {1, {}}, {-1, sep}};
  } else if (post.is_null()) {
    t.single_ = {{-1, special_ids("[CLS]")}, {0, {}}, {-1, special_ids("[SEP]")}};
    unsupported("no post_processor (BERT programs need [CLS]/[SEP])");
  } else {
    unsupported("post_processor " + field(post, "type").dump());
  }
  auto specials_in = [](const std::vector<Piece>& tpl) {
    size_t n = 0;
    for (const Piece& p : tpl) n += p.ids.size();
    return n;
  };
  if (max_length <= specials_in(t.pair_) || max_length <= specials_in(t.single_))
    fail(SE_ERR_ARGUMENT, "bad_max_length", "max_length " + std::to_string(max_length) +
                                                " leaves no room for text besides the special tokens");
  return t;
}

std::u32string Tokenizer::normalize(const std::u32string& text) const {
  std::u32string s;
  s.reserve(text.size());
  for (char32_t c : text) {
    if (clean_text_) {
      if (c == 0 || c == 0xFFFD || is_control(c)) continue;
      if (c == '\t' || c == '\n' || c == '\r' || is_white_space_property(c)) c = ' ';
    }
    if (handle_chinese_chars_ && is_chinese_char(c)) {
      s.push_back(' ');
      s.push_back(c);
      s.push_back(' ');
    } else {
      s.push_back(c);
    }
  }
  if (strip_accents_) {  // NFD (utf8proc, with canonical reordering), then drop nonspacing marks (Mn)
    std::string utf8 = encode_utf8(s);
    std::unique_ptr<utf8proc_uint8_t, decltype(&free)> nfd(
        utf8proc_NFD(reinterpret_cast<const utf8proc_uint8_t*>(utf8.c_str())), &free);
    if (!nfd) fail(SE_ERR_RUNTIME, "utf8proc", "NFD failed");
    std::u32string d = decode_utf8(reinterpret_cast<const char*>(nfd.get()));
    s.clear();
    for (char32_t c : d)
      if (category(c) != UTF8PROC_CATEGORY_MN) s.push_back(c);
  }
  if (lowercase_) {  // Rust's char::to_lowercase: the simple mapping, except U+0130 whose full mapping is "i\u0307"
    std::u32string low;
    low.reserve(s.size());
    for (char32_t c : s) {
      if (c == 0x130) {
        low.push_back('i');
        low.push_back(0x307);
      } else {
        low.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
      }
    }
    s.swap(low);
  }
  return s;
}

void Tokenizer::word_piece(const std::u32string& word, std::vector<int64_t>& out) const {
  if (word.size() > max_input_chars_per_word_) {
    out.push_back(unk_id_);
    return;
  }
  std::vector<int64_t> pieces;
  size_t start = 0;
  while (start < word.size()) {  // greedy longest match first, as tokenizers' WordPiece
    size_t end = word.size();
    bool found = false;
    while (start < end) {
      std::string sub = start > 0 ? prefix_ : "";
      sub += encode_utf8(word.substr(start, end - start));
      auto it = vocab_.find(sub);
      if (it != vocab_.end()) {
        pieces.push_back(it->second);
        found = true;
        break;
      }
      --end;
    }
    if (!found) {
      out.push_back(unk_id_);
      return;
    }
    start = end;
  }
  out.insert(out.end(), pieces.begin(), pieces.end());
}

std::vector<int64_t> Tokenizer::tokenize(const std::string& text) const {
  const std::u32string raw = decode_utf8(text);
  std::vector<int64_t> ids;
  auto run_segment = [&](const std::u32string& seg) {
    std::u32string n = normalize(seg);
    std::u32string word;
    auto flush = [&] {
      if (!word.empty()) word_piece(word, ids);
      word.clear();
    };
    for (char32_t c : n) {
      if (is_white_space_property(c)) {
        flush();
      } else if (is_punctuation(c)) {
        flush();
        word.push_back(c);
        flush();
      } else {
        word.push_back(c);
      }
    }
    flush();
  };
  // Added tokens are found in the raw text first (leftmost, then longest); the text between them is tokenized.
  size_t seg_start = 0, i = 0;
  while (i < raw.size()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : added_)
      if (raw.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    if (i > seg_start) run_segment(raw.substr(seg_start, i - seg_start));
    ids.push_back(hit->id);
    i += hit->content.size();
    seg_start = i;
  }
  if (seg_start < raw.size()) run_segment(raw.substr(seg_start));
  return ids;
}

std::vector<int64_t> Tokenizer::apply_template(const std::vector<Piece>& tpl, const std::vector<int64_t>& a,
                                               const std::vector<int64_t>* b) const {
  std::vector<int64_t> out;
  for (const Piece& p : tpl) {
    if (p.sequence < 0)
      out.insert(out.end(), p.ids.begin(), p.ids.end());
    else if (p.sequence == 0)
      out.insert(out.end(), a.begin(), a.end());
    else if (b != nullptr)
      out.insert(out.end(), b->begin(), b->end());
  }
  return out;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, const std::string* pair) const {
  std::vector<int64_t> a = tokenize(text);
  if (pair == nullptr) {
    size_t specials = 0;
    for (const Piece& p : single_) specials += p.ids.size();
    size_t room = max_length_ - specials;
    if (a.size() > room) a.resize(room);
    return apply_template(single_, a, nullptr);
  }
  std::vector<int64_t> b = tokenize(*pair);
  size_t specials = 0;
  for (const Piece& p : pair_) specials += p.ids.size();
  const size_t room = max_length_ - specials;
  if (a.size() + b.size() > room) {  // tokenizers' TruncationStrategy::LongestFirst
    size_t n1 = a.size(), n2 = b.size();
    bool swap = n1 > n2;
    if (swap) std::swap(n1, n2);
    if (n1 > room) {
      n2 = n1;
    } else {
      n2 = std::max(n1, room - n1);
    }
    if (n1 + n2 > room) {
      n1 = room / 2;
      n2 = n1 + room % 2;
    }
    if (swap) std::swap(n1, n2);
    if (a.size() > n1) a.resize(n1);
    if (b.size() > n2) b.resize(n2);
  }
  return apply_template(pair_, a, &b);
}

}  // namespace se
