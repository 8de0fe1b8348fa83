#include "dags/yaml_reader.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>

#include "core/json_limits.h"
#include "core/strings.h"
#include "core/time.h"
#include "core/utf8.h"

namespace nightshift {
namespace {

// A few aliases can expand exponentially; the node budget stops that. An alias may also point
// back at its own ancestor (yaml-cpp builds a cyclic graph for "&a [*a]"); the nesting rule of
// core/json_limits.h stops that walk, as it stops values the JSON library could not print.
constexpr size_t kMaxJsonNodes = 100000;

// Optimal string alignment distance: Levenshtein plus swaps of neighbouring characters, which
// is the most common typo ("retires" for "retries").
size_t EditDistance(std::string_view a, std::string_view b) {
  const size_t n = a.size();
  const size_t m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

template <typename Range>
std::optional<std::string> Closest(std::string_view word, const Range& candidates) {
  const size_t limit = std::min<size_t>(2, word.size() / 2);
  std::optional<std::string> best;
  size_t best_distance = limit + 1;
  for (const auto& candidate : candidates) {
    const size_t distance = EditDistance(word, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  if (best && *best == word) return std::nullopt;  // an exact match is not a suggestion
  return best;
}

std::string SuggestionText(const std::optional<std::string>& match) {
  return match ? " (did you mean \"" + *match + "\"?)" : "";
}

// Zone names from the tzdata the date library reads as well. Read once; a system without the
// file simply gets no suggestions.
const std::vector<std::string>& TimeZoneNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    std::ifstream in("/usr/share/zoneinfo/tzdata.zi");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string kind, first, second;
      words >> kind >> first >> second;
      if (kind == "Z") out.push_back(first);   // Z NAME ...
      if (kind == "L") out.push_back(second);  // L TARGET ALIAS
    }
    std::sort(out.begin(), out.end());
    return out;
  }();
  return names;
}

// Notes where each document starts and ignores everything else.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
  }
  void OnMapEnd() override {}

  std::vector<YAML::Mark> marks;
};

YamlField MakeField(const YAML::Node& key, const YAML::Node& value, std::string_view prefix) {
  YamlField field;
  field.name = key.Scalar();
  field.label = std::string(prefix) + field.name;
  field.value = value;
  field.key_position = PositionOf(key);
  field.value_position = PositionOf(value, field.key_position);
  // An empty value's mark is wherever the parser stood next, usually the following line.
  if (value.IsNull() && field.value_position.line != field.key_position.line) {
    field.value_position = field.key_position;
  }
  return field;
}

bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

bool ParseInt64(std::string_view text, int64_t& out) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

bool LooksLikeInteger(std::string_view text) {
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) text.remove_prefix(1);
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

// YAML 1.2 core schema floats, without .inf/.nan which JSON cannot hold.
bool ParseFloat(std::string_view text, double& out) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  size_t digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    size_t exponent_digits = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++exponent_digits;
    if (exponent_digits == 0) return false;
  }
  if (i != text.size()) return false;
  const std::string copy(text);
  out = std::strtod(copy.c_str(), nullptr);
  return true;
}

nlohmann::json ScalarToJson(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (!IsPlainScalar(node)) return text;  // quoted or explicitly tagged: a string as written
  if (text == "~" || text == "null" || text == "Null" || text == "NULL") return nullptr;
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  int64_t integer = 0;
  if (LooksLikeInteger(text) && ParseInt64(text, integer)) return integer;
  double number = 0;
  if (ParseFloat(text, number)) return number;
  return text;
}

// `depth`: how many lists and mappings hold `node`. False with `why` set when the value breaks
// the nesting rule or the node budget.
bool ToJson(const YAML::Node& node, int depth, size_t& budget, nlohmann::json& out, std::string& why) {
  if (budget == 0) {
    why = "too large (more than " + std::to_string(kMaxJsonNodes) + " values, counting what aliases repeat)";
    return false;
  }
  --budget;
  if ((node.IsSequence() || node.IsMap()) && depth >= kMaxNestingDepth) {
    why = TooDeepMessage();
    return false;
  }
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      out = ScalarToJson(node);
      return true;
    case YAML::NodeType::Sequence:
      out = nlohmann::json::array();
      for (const YAML::Node& item : node) {
        nlohmann::json element;
        if (!ToJson(item, depth + 1, budget, element, why)) return false;
        out.push_back(std::move(element));
      }
      return true;
    case YAML::NodeType::Map:
      out = nlohmann::json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        std::string key;
        if (it->first.IsScalar()) {
          key = it->first.Scalar();
        } else {
          nlohmann::json key_json;
          if (!ToJson(it->first, depth + 1, budget, key_json, why)) return false;
          key = key_json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        }
        nlohmann::json element;
        if (!ToJson(it->second, depth + 1, budget, element, why)) return false;
        out[key] = std::move(element);
      }
      return true;
    default:
      out = nullptr;
      return true;
  }
}

// True when `root`, the first document of `text`, is certainly its only one. After a block
// mapping that starts in column 0, yaml-cpp can begin another document only at a line that
// starts with "---" or "..." (anything else in column 0 either continues the mapping or is an
// error); the stray-comma documents of yaml-cpp 0.7 follow only flow collections, empty
// documents or indented roots.
bool IsTheOnlyDocument(const YAML::Node& root, std::string_view text) {
  if (!root.IsMap() || root.Style() != YAML::EmitterStyle::Block) return false;
  const YAML::Mark mark = root.Mark();
  if (mark.is_null() || mark.column != 0 || mark.line < 0) return false;
  int line = 0;
  for (size_t start = 0; start < text.size(); ++line) {
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string_view content = text.substr(start, end - start);
    if (line > mark.line && (content.starts_with("---") || content.starts_with("..."))) return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

void YamlDiagnostics::Add(YamlPosition at, std::string message) {
  problems_.push_back(YamlProblem{at, std::move(message)});
}

std::vector<YamlProblem> YamlDiagnostics::Sorted() const {
  std::vector<YamlProblem> sorted = problems_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const YamlProblem& a, const YamlProblem& b) {
    return std::pair(a.position.line, a.position.column) < std::pair(b.position.line, b.position.column);
  });
  return sorted;
}

YamlPosition PositionOf(const YAML::Node& node, YamlPosition fallback) {
  try {
    if (!node.IsDefined()) return fallback;
    const YAML::Mark mark = node.Mark();
    if (mark.is_null() || mark.line < 0 || mark.column < 0) return fallback;
    return YamlPosition{mark.line + 1, mark.column + 1};
  } catch (const std::exception&) {
    return fallback;
  }
}

std::optional<YAML::Node> ParseYamlDocument(std::string_view text, YamlDiagnostics& diagnostics) {
  // yaml-cpp passes invalid UTF-8 through into strings, where it would fail later (JSON for the
  // API, the run's snapshot) far from the file; it is the file that is wrong, so it is refused here.
  if (std::optional<size_t> bad = FindInvalidUtf8(text)) {
    const TextPosition at = PositionOfOffset(text, *bad);
    diagnostics.Add(YamlPosition{at.line, at.column},
                    InvalidUtf8Message(static_cast<unsigned char>(text[*bad])) + "; save the file as UTF-8");
    return std::nullopt;
  }
  try {
    const std::string copy(text);
    // Most files are one block mapping: parse them once. YAML::Load returns the first document
    // and throws on any error inside it, the same error the pass below would throw.
    YAML::Node first = YAML::Load(copy);
    if (IsTheOnlyDocument(first, copy)) return first;
    // Otherwise a pass over the events that only notes where documents start. YAML::LoadAll cannot
    // be used: on a stray "," (at the start of a file, or after "[a]") yaml-cpp 0.7 reports empty
    // documents at the same place forever, and LoadAll collects them until memory runs out. Three
    // documents are enough to tell "one", "more than one" and "stuck".
    std::istringstream in(copy);
    YAML::Parser parser(in);
    DocumentStarts starts;
    for (int i = 0; i < 3 && parser.HandleNextDocument(starts); ++i) {
    }
    for (size_t i = 1; i < starts.marks.size(); ++i) {
      const YAML::Mark& mark = starts.marks[i];
      if (mark.pos == starts.marks[i - 1].pos) {
        const std::string token = mark.pos >= 0 && static_cast<size_t>(mark.pos) < copy.size()
                                      ? std::string(1, copy[static_cast<size_t>(mark.pos)])
                                      : std::string("end of input");
        diagnostics.Add(YamlPosition{mark.line + 1, mark.column + 1},
                        "YAML syntax error: unexpected " + Quote(token));
        return std::nullopt;
      }
    }
    if (starts.marks.size() > 1) {
      diagnostics.Add(YamlPosition{starts.marks[1].line + 1, starts.marks[1].column + 1},
                      "only one YAML document per file is allowed, found a second one");
      return std::nullopt;
    }
    if (starts.marks.empty()) return YAML::Node(YAML::NodeType::Null);
    return first;  // the first document, which is the only one
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own guard (2,000 levels) against its recursive parser; values deeper than the
    // nesting rule but shallower than that are refused where they are read (NodeToScalarOrJson).
    YamlPosition at;
    if (!e.mark.is_null() && e.mark.line >= 0) at = YamlPosition{e.mark.line + 1, e.mark.column + 1};
    diagnostics.Add(at, TooDeepMessage());
  } catch (const YAML::ParserException& e) {
    YamlPosition at;
    if (!e.mark.is_null() && e.mark.line >= 0) at = YamlPosition{e.mark.line + 1, e.mark.column + 1};
    diagnostics.Add(at, "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    diagnostics.Add(YamlPosition{}, "YAML error: " + e.msg);
  } catch (const std::exception& e) {
    diagnostics.Add(YamlPosition{}, std::string("cannot read YAML: ") + e.what());
  }
  return std::nullopt;
}

std::string DescribeNode(const YAML::Node& node) {
  try {
    if (!node.IsDefined()) return "nothing";
    switch (node.Type()) {
      case YAML::NodeType::Null:
        return "null";
      case YAML::NodeType::Scalar:
        return Quote(node.Scalar());
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Map:
        return "a mapping";
      default:
        return "nothing";
    }
  } catch (const std::exception&) {
    return "nothing";
  }
}

std::optional<std::string> ClosestMatch(std::string_view word, std::span<const std::string_view> candidates) {
  return Closest(word, candidates);
}

std::optional<std::string> ClosestMatch(std::string_view word, const std::vector<std::string>& candidates) {
  return Closest(word, candidates);
}

std::string DidYouMean(std::string_view word, std::span<const std::string_view> candidates) {
  return SuggestionText(ClosestMatch(word, candidates));
}

std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates) {
  return SuggestionText(ClosestMatch(word, candidates));
}

std::string TimeZoneHint(std::string_view name) {
  std::optional<std::string> match = ClosestMatch(name, TimeZoneNames());
  if (match && IsKnownTimeZone(*match)) return SuggestionText(match);
  return " (use an IANA name such as Europe/Berlin or UTC)";
}

YamlMap YamlMap::Read(const YAML::Node& node, std::string_view label, std::span<const std::string_view> known,
                      std::string_view prefix, YamlDiagnostics& diagnostics,
                      std::span<const YamlAlias> aliases) {
  return ReadImpl(node, label, &known, prefix, diagnostics, aliases);
}

YamlMap YamlMap::ReadFree(const YAML::Node& node, std::string_view label, std::string_view prefix,
                          YamlDiagnostics& diagnostics) {
  return ReadImpl(node, label, nullptr, prefix, diagnostics, {});
}

YamlMap YamlMap::ReadImpl(const YAML::Node& node, std::string_view label,
                          const std::span<const std::string_view>* known, std::string_view prefix,
                          YamlDiagnostics& diagnostics, std::span<const YamlAlias> aliases) {
  YamlMap map;
  map.position_ = PositionOf(node);
  if (!node.IsMap()) {
    diagnostics.Add(map.position_, std::string(label) + ": expected a mapping, got " + DescribeNode(node));
    return map;
  }
  map.is_map_ = true;

  auto accept = [&](const YAML::Node& key, const YAML::Node& value, bool merged) {
    if (!key.IsScalar()) {
      diagnostics.Add(PositionOf(key, map.position_),
                      std::string(label) + ": field names must be plain text, got " + DescribeNode(key));
      return;
    }
    YamlField field = MakeField(key, value, prefix);
    if (known != nullptr && std::find(known->begin(), known->end(), field.name) == known->end()) {
      std::optional<std::string> suggestion = ClosestMatch(field.name, *known);
      for (const auto& [theirs, ours] : aliases) {
        if (!suggestion && theirs == field.name) suggestion = std::string(ours);
      }
      diagnostics.Add(field.key_position, "unknown field " + Quote(field.name) + SuggestionText(suggestion));
      return;
    }
    if (const YamlField* first = map.Find(field.name)) {
      // YAML merge keys are defaults: what is written explicitly, or merged earlier, wins.
      if (!merged) {
        diagnostics.Add(field.key_position, "duplicate field " + Quote(field.name) +
                                                " (first defined at line " +
                                                std::to_string(first->key_position.line) + ")");
      }
      return;
    }
    map.fields_.push_back(std::move(field));
  };

  std::vector<YAML::Node> merges;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (IsPlainScalar(it->first) && it->first.Scalar() == "<<") {
      merges.push_back(it->second);
      continue;
    }
    accept(it->first, it->second, false);
  }
  for (const YAML::Node& merge : merges) {
    std::vector<YAML::Node> sources;
    if (merge.IsMap()) {
      sources.push_back(merge);
    } else if (merge.IsSequence()) {
      for (const YAML::Node& item : merge) sources.push_back(item);
    }
    for (const YAML::Node& source : sources) {
      if (!source.IsMap()) {
        diagnostics.Add(PositionOf(merge, map.position_),
                        "<<: expected a mapping or a list of mappings to merge, got " + DescribeNode(source));
        continue;
      }
      for (auto it = source.begin(); it != source.end(); ++it) accept(it->first, it->second, true);
    }
    if (sources.empty()) {
      diagnostics.Add(PositionOf(merge, map.position_),
                      "<<: expected a mapping or a list of mappings to merge, got " + DescribeNode(merge));
    }
  }
  return map;
}

const YamlField* YamlMap::Find(std::string_view name) const {
  for (const YamlField& field : fields_) {
    if (field.name == name) return &field;
  }
  return nullptr;
}

std::optional<std::string> ReadString(const YamlField& field, YamlDiagnostics& diagnostics) {
  if (field.value.IsScalar()) return field.value.Scalar();
  diagnostics.Add(field.value_position,
                  field.label + ": expected a string, got " + DescribeNode(field.value));
  return std::nullopt;
}

std::optional<std::string> ReadNonEmptyString(const YamlField& field, YamlDiagnostics& diagnostics) {
  if (field.is_null()) {
    diagnostics.Add(field.value_position, field.label + ": must not be empty");
    return std::nullopt;
  }
  std::optional<std::string> text = ReadString(field, diagnostics);
  if (text && text->empty()) {
    diagnostics.Add(field.value_position, field.label + ": must not be empty");
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> ReadInt(const YamlField& field, YamlDiagnostics& diagnostics, int64_t min,
                               int64_t max) {
  int64_t value = 0;
  if (!field.value.IsScalar() || !LooksLikeInteger(field.value.Scalar())) {
    diagnostics.Add(field.value_position,
                    field.label + ": expected an integer, got " + DescribeNode(field.value));
    return std::nullopt;
  }
  const std::string& text = field.value.Scalar();
  const bool parsed = ParseInt64(text, value);
  if (!parsed || value < min || value > max) {
    // A number too large for 64 bits is out of range on the side its sign points to.
    const bool too_small = parsed ? value < min : (!text.empty() && text.front() == '-');
    if (too_small) {
      diagnostics.Add(field.value_position,
                      field.label + ": must be at least " + std::to_string(min) + ", got " + text);
    } else {
      diagnostics.Add(field.value_position,
                      field.label + ": must be at most " + std::to_string(max) + ", got " + text);
    }
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ReadBool(const YamlField& field, YamlDiagnostics& diagnostics) {
  if (field.value.IsScalar()) {
    std::string text = field.value.Scalar();
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    if (text == "true" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "no" || text == "off") return false;
  }
  diagnostics.Add(field.value_position,
                  field.label + ": expected true or false, got " + DescribeNode(field.value));
  return std::nullopt;
}

std::optional<Duration> ReadDuration(const YamlField& field, YamlDiagnostics& diagnostics, bool positive) {
  if (!field.value.IsScalar()) {
    diagnostics.Add(
        field.value_position,
        field.label + ": expected a duration such as 90s, 5m or 1h30m, got " + DescribeNode(field.value));
    return std::nullopt;
  }
  Result<Duration> duration = ParseDuration(field.value.Scalar());
  if (!duration.ok()) {
    diagnostics.Add(field.value_position, field.label + ": " + duration.status().message());
    return std::nullopt;
  }
  if (positive && duration->count() <= 0) {
    diagnostics.Add(field.value_position, field.label + ": must be longer than 0s");
    return std::nullopt;
  }
  return *duration;
}

std::optional<std::vector<std::string>> ReadStringList(const YamlField& field, YamlDiagnostics& diagnostics,
                                                       std::vector<YamlPosition>* positions) {
  if (!field.value.IsSequence()) {
    diagnostics.Add(field.value_position,
                    field.label + ": expected a list, got " + DescribeNode(field.value));
    return std::nullopt;
  }
  std::vector<std::string> items;
  bool ok = true;
  size_t index = 0;
  for (const YAML::Node& item : field.value) {
    const YamlPosition at = PositionOf(item, field.value_position);
    if (!item.IsScalar()) {
      diagnostics.Add(
          at, field.label + "[" + std::to_string(index) + "]: expected a string, got " + DescribeNode(item));
      ok = false;
    } else {
      items.push_back(item.Scalar());
      if (positions != nullptr) positions->push_back(at);
    }
    ++index;
  }
  if (!ok) return std::nullopt;
  return items;
}

std::optional<std::string> NodeToScalarOrJson(const YAML::Node& node, std::string_view label,
                                              YamlDiagnostics& diagnostics) {
  if (node.IsNull()) return std::string();
  if (node.IsScalar()) return node.Scalar();
  nlohmann::json json;
  size_t budget = kMaxJsonNodes;
  std::string why;
  if (!ToJson(node, 0, budget, json, why)) {
    diagnostics.Add(PositionOf(node), std::string(label) + ": " + why);
    return std::nullopt;
  }
  try {
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception& e) {
    diagnostics.Add(PositionOf(node), std::string(label) + ": cannot convert to JSON: " + e.what());
    return std::nullopt;
  }
}

std::optional<std::string> ReadScalarOrJson(const YamlField& field, YamlDiagnostics& diagnostics) {
  return NodeToScalarOrJson(field.value, field.label, diagnostics);
}

Status ReadWholeFile(const std::string& path, std::string& out) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return Status::IOError(std::strerror(errno));
  out.clear();
  char buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) out.append(buffer, n);
  const int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) return Status::IOError(std::strerror(error));
  return Status::OK();
}

std::optional<YamlPosition> FindTopLevelValue(std::string_view text, std::string_view name) {
  YamlDiagnostics ignored;
  std::optional<YAML::Node> root = ParseYamlDocument(text, ignored);
  if (!root || !root->IsMap()) return std::nullopt;
  try {
    for (auto it = root->begin(); it != root->end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == name) {
        return MakeField(it->first, it->second, "").value_position;
      }
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace nightshift
