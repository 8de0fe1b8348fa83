// Helpers over yaml-cpp shared by the DAG loader and the config loader: parse with positions,
// typed reads that explain wrong types, unknown fields with "did you mean". Nothing here throws;
// every yaml-cpp exception is caught and turned into a positioned problem.
//
// Positions are 1-based (line and column as editors count); yaml-cpp's own marks are 0-based.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/duration.h"
#include "core/status.h"

namespace nightshift {

struct YamlPosition {
  int line = 1;
  int column = 1;
};

struct YamlProblem {
  YamlPosition position;
  std::string message;
};

// The problems found while reading one file, in the order they were found.
class YamlDiagnostics {
 public:
  void Add(YamlPosition at, std::string message);
  bool empty() const { return problems_.empty(); }
  size_t size() const { return problems_.size(); }
  // Sorted by line, then column; problems at the same position keep the order they were found.
  std::vector<YamlProblem> Sorted() const;

 private:
  std::vector<YamlProblem> problems_;
};

// Where `node` was written; `fallback` for nodes without a mark (created in code, or undefined).
YamlPosition PositionOf(const YAML::Node& node, YamlPosition fallback = {});

// Parses `text` as exactly one YAML document. Empty text (or only comments) gives a Null node.
// A syntax error is recorded at the parser's position and yields nullopt; so does a second
// document, which is recorded at its start.
std::optional<YAML::Node> ParseYamlDocument(std::string_view text, YamlDiagnostics& diagnostics);

// Describes a node for "got ..." in messages: "three" (quoted, as written), a list, a mapping, null.
std::string DescribeNode(const YAML::Node& node);

// The candidate closest to `word` by edit distance (a swap of neighbours counts once), when it
// is close enough to be a plausible typo: at most 2 edits and at most half of `word`'s length.
// Ties go to the earlier candidate.
std::optional<std::string> ClosestMatch(std::string_view word, std::span<const std::string_view> candidates);
std::optional<std::string> ClosestMatch(std::string_view word, const std::vector<std::string>& candidates);
// " (did you mean "x"?)" or "" when nothing is close.
std::string DidYouMean(std::string_view word, std::span<const std::string_view> candidates);
std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates);

// The hint after an unknown time zone: " (did you mean "Europe/Berlin"?)" when a zone in the
// system's tzdata is close, else a reminder of what an IANA name looks like.
std::string TimeZoneHint(std::string_view name);

// One field of a mapping, as written.
struct YamlField {
  std::string name;   // the key
  std::string label;  // how messages name it: the key, prefixed for nested mappings ("map.chunk")
  YAML::Node value;
  YamlPosition key_position;
  // Where the value was written. A value left empty ("retries:") has no text of its own; it
  // points at the key then rather than at whatever follows on the next line.
  YamlPosition value_position;

  bool is_null() const { return value.IsNull(); }
};

// A name people bring from other tools, and ours: {"depends", "depends_on"}.
using YamlAlias = std::pair<std::string_view, std::string_view>;

// The fields of a mapping, checked against the names it may hold.
class YamlMap {
 public:
  // Reads `node` as a mapping named `label` in messages. Records a problem when it is not a
  // mapping, for each field not in `known` (with "did you mean"), for duplicate fields and for
  // keys that are not plain scalars. `prefix` is put before each field's name in its label.
  // An unknown field named in `aliases` is pointed at our name even when it is not a near typo.
  // YAML merge keys ("<<: *defaults") are expanded: merged fields count as written there,
  // fields written explicitly win.
  static YamlMap Read(const YAML::Node& node, std::string_view label, std::span<const std::string_view> known,
                      std::string_view prefix, YamlDiagnostics& diagnostics,
                      std::span<const YamlAlias> aliases = {});
  // Same, for mappings whose keys are free (env, params, pools, windows): no unknown-field check.
  static YamlMap ReadFree(const YAML::Node& node, std::string_view label, std::string_view prefix,
                          YamlDiagnostics& diagnostics);

  bool is_map() const { return is_map_; }
  YamlPosition position() const { return position_; }
  // The field called `name`, or nullptr when absent (or unknown).
  const YamlField* Find(std::string_view name) const;
  // Known fields in file order, then fields merged in through "<<".
  const std::vector<YamlField>& fields() const { return fields_; }

 private:
  static YamlMap ReadImpl(const YAML::Node& node, std::string_view label,
                          const std::span<const std::string_view>* known, std::string_view prefix,
                          YamlDiagnostics& diagnostics, std::span<const YamlAlias> aliases);
  bool is_map_ = false;
  YamlPosition position_;
  std::vector<YamlField> fields_;
};

// Typed reads of a field's value. Each returns nullopt after recording a problem at the value,
// such as `retries: expected an integer, got "three"`. None of them accepts null; callers decide
// what null means for their field (usually: not set).
std::optional<std::string> ReadString(const YamlField& field, YamlDiagnostics& diagnostics);
// A string that must not be empty (null counts as empty here).
std::optional<std::string> ReadNonEmptyString(const YamlField& field, YamlDiagnostics& diagnostics);
std::optional<int64_t> ReadInt(const YamlField& field, YamlDiagnostics& diagnostics,
                               int64_t min = std::numeric_limits<int64_t>::min(),
                               int64_t max = std::numeric_limits<int64_t>::max());
// true/false in any case; yes/no and on/off as YAML 1.1 (and Ansible users) write them.
std::optional<bool> ReadBool(const YamlField& field, YamlDiagnostics& diagnostics);
// A duration as ParseDuration reads it: 90, "90s", "1h30m". `positive` rejects zero.
std::optional<Duration> ReadDuration(const YamlField& field, YamlDiagnostics& diagnostics,
                                     bool positive = false);
// A list of strings. Each entry's position goes to `positions` when given.
std::optional<std::vector<std::string>> ReadStringList(const YamlField& field, YamlDiagnostics& diagnostics,
                                                       std::vector<YamlPosition>* positions = nullptr);

// A value as a task sees it in its environment: scalars as written, lists and mappings as compact
// JSON. Plain scalars become JSON numbers, booleans or null where YAML would read them so;
// quoted scalars stay strings. Fails (recording at the value) for structures nested too deeply
// or expanding too far through aliases, which a YAML alias can do without bound.
std::optional<std::string> ReadScalarOrJson(const YamlField& field, YamlDiagnostics& diagnostics);
std::optional<std::string> NodeToScalarOrJson(const YAML::Node& node, std::string_view label,
                                              YamlDiagnostics& diagnostics);

// Reads the file at `path` into `out`. The error is the system's reason ("No such file or
// directory"); a folder is refused as one.
Status ReadWholeFile(const std::string& path, std::string& out);

// Where the value of top-level field `name` was written in `text`, without validating anything
// else; nullopt when the text does not parse or has no such field.
std::optional<YamlPosition> FindTopLevelValue(std::string_view text, std::string_view name);

}  // namespace nightshift
