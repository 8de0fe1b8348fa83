#include "app/config.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "core/ids.h"
#include "core/strings.h"
#include "core/time.h"
#include "core/window.h"
#include "dags/limits_reader.h"
#include "dags/yaml_reader.h"

namespace nightshift {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kConfigFields[] = {"dags_folder", "state_dir",      "listen",     "executor",
                                              "parallelism", "pools",          "windows",    "retention",
                                              "auth",        "shutdown_grace", "kill_grace", "slurm",
                                              "limits"};
constexpr std::string_view kWindowFields[] = {"timezone", "open", "on_close"};
constexpr std::string_view kRetentionFields[] = {"max_runs_per_dag", "max_age"};
constexpr std::string_view kAuthFields[] = {"token_file", "read_requires_token"};
constexpr std::string_view kSlurmFields[] = {"partition",  "account",       "qos",
                                             "extra_args", "poll_interval", "shared_dir"};
constexpr YamlAlias kConfigAliases[] = {{"dags_dir", "dags_folder"},
                                        {"dag_folder", "dags_folder"},
                                        {"state", "state_dir"},
                                        {"data_dir", "state_dir"},
                                        {"bind", "listen"},
                                        {"address", "listen"},
                                        {"max_parallel", "parallelism"},
                                        {"workers", "parallelism"}};

// "HOST:PORT", with IPv6 hosts in brackets ("[::1]:8080"). Port 0 lets the system pick one.
bool IsValidListen(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("]:");
    if (close == std::string_view::npos) return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return false;  // IPv6 needs brackets
  }
  if (host.empty() || port.empty() || port.size() > 5) return false;
  if (!std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); })) return false;
  return std::stoi(std::string(port)) <= 65535;
}

class ConfigReader {
 public:
  explicit ConfigReader(const std::string& path) : path_(path) {
    // Relative paths in the file mean "next to this file", wherever the daemon is started from.
    fs::path folder = fs::path(path).parent_path();
    if (folder.empty()) folder = ".";  // "nightshift.yaml" alone lives in the working directory
    std::error_code ec;
    base_ = fs::absolute(folder, ec);
    if (ec) base_ = folder;
  }

  Result<Config> Read(std::string_view text) {
    config_.config_path = path_;
    if (std::optional<YAML::Node> root = ParseYamlDocument(text, diagnostics_)) ReadRoot(*root);
    if (!diagnostics_.empty()) {
      std::string message;
      for (const YamlProblem& problem : diagnostics_.Sorted()) {
        if (!message.empty()) message += "\n";
        message += path_ + ":" + std::to_string(problem.position.line) + ":" +
                   std::to_string(problem.position.column) + ": " + problem.message;
      }
      return Status::InvalidArgument(std::move(message));
    }
    config_.dags_folder = Resolve(config_.dags_folder);
    config_.state_dir = Resolve(config_.state_dir);
    if (!config_.token_file.empty()) config_.token_file = Resolve(config_.token_file);
    if (config_.slurm.shared_dir) config_.slurm.shared_dir = Resolve(*config_.slurm.shared_dir);
    return config_;
  }

 private:
  void Error(YamlPosition at, std::string message) { diagnostics_.Add(at, std::move(message)); }

  // Absolute, normalised, "~/" expanded; without a trailing slash so paths join predictably.
  std::string Resolve(const std::string& value) const {
    fs::path path(value);
    if (value == "~" || value.starts_with("~/")) {
      if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
        path = fs::path(home) / value.substr(std::min<size_t>(value.size(), 2));
      }
    }
    if (path.is_relative()) path = base_ / path;
    std::string out = path.lexically_normal().string();
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
  }

  void ReadRoot(const YAML::Node& root) {
    if (root.IsNull()) return;  // an empty file: every default
    const YamlMap top = YamlMap::Read(root, "config", kConfigFields, "", diagnostics_, kConfigAliases);
    for (const YamlField& field : top.fields()) {
      if (field.is_null()) continue;  // null keeps the default
      const std::string& name = field.name;
      if (name == "dags_folder") {
        if (auto text = ReadNonEmptyString(field, diagnostics_)) config_.dags_folder = *text;
      } else if (name == "state_dir") {
        if (auto text = ReadNonEmptyString(field, diagnostics_)) config_.state_dir = *text;
      } else if (name == "listen") {
        if (auto text = ReadNonEmptyString(field, diagnostics_)) {
          if (IsValidListen(*text)) {
            config_.listen = *text;
          } else {
            Error(field.value_position,
                  "listen: expected HOST:PORT such as 127.0.0.1:8080, got " + Quote(*text));
          }
        }
      } else if (name == "executor") {
        if (auto text = ReadNonEmptyString(field, diagnostics_)) {
          if (*text == "local" || *text == "slurm") {
            config_.executor = *text;
          } else {
            std::string hint = DidYouMean(*text, std::vector<std::string>{"local", "slurm"});
            if (hint.empty()) hint = " (one of: local, slurm)";
            Error(field.value_position, "executor: unknown executor " + Quote(*text) + hint);
          }
        }
      } else if (name == "parallelism") {
        if (auto value = ReadInt(field, diagnostics_, 1, INT_MAX))
          config_.parallelism = static_cast<int>(*value);
      } else if (name == "pools") {
        ReadPools(field);
      } else if (name == "windows") {
        ReadWindows(field);
      } else if (name == "retention") {
        ReadRetention(field);
      } else if (name == "auth") {
        ReadAuth(field);
      } else if (name == "shutdown_grace") {
        if (auto value = ReadDuration(field, diagnostics_)) config_.shutdown_grace = *value;
      } else if (name == "kill_grace") {
        if (auto value = ReadDuration(field, diagnostics_)) config_.kill_grace = *value;
      } else if (name == "slurm") {
        ReadSlurm(field);
      } else if (name == "limits") {
        if (auto limits = ReadTaskLimits(field, diagnostics_)) config_.limits = config_.limits.OverriddenBy(*limits);
      }
    }
  }

  // Pools named here are added to "default", which stays at 128 slots unless set.
  void ReadPools(const YamlField& field) {
    const YamlMap pools = YamlMap::ReadFree(field.value, "pools", "pools.", diagnostics_);
    for (const YamlField& pool : pools.fields()) {
      if (!IsValidId(pool.name)) {
        Error(pool.key_position,
              "pools: invalid pool name " + Quote(pool.name) + ": " + std::string(kIdRule));
        continue;
      }
      if (pool.is_null()) {
        Error(pool.value_position, pool.label + ": expected the number of slots, got null");
        continue;
      }
      if (auto slots = ReadInt(pool, diagnostics_, 1, INT_MAX))
        config_.pools[pool.name] = static_cast<int>(*slots);
    }
  }

  void ReadWindows(const YamlField& field) {
    const YamlMap windows = YamlMap::ReadFree(field.value, "windows", "windows.", diagnostics_);
    for (const YamlField& window : windows.fields()) {
      if (!IsValidId(window.name)) {
        Error(window.key_position,
              "windows: invalid window name " + Quote(window.name) + ": " + std::string(kIdRule));
        continue;
      }
      ReadWindow(window);
    }
  }

  void ReadWindow(const YamlField& window) {
    const std::string prefix = window.label + ".";
    const YamlMap fields = YamlMap::Read(window.value, window.label, kWindowFields, prefix, diagnostics_);
    if (!fields.is_map()) return;
    const size_t errors_before = diagnostics_.size();
    std::string timezone = "UTC";
    std::vector<std::string> open;
    OnClose on_close = OnClose::kDrain;

    if (const YamlField* field = fields.Find("timezone"); field != nullptr && !field->is_null()) {
      if (auto zone = ReadNonEmptyString(*field, diagnostics_)) {
        if (IsKnownTimeZone(*zone)) {
          timezone = *zone;
        } else {
          Error(field->value_position,
                field->label + ": unknown time zone " + Quote(*zone) + TimeZoneHint(*zone));
        }
      }
    }
    const YamlField* open_field = fields.Find("open");
    if (open_field == nullptr || open_field->is_null()) {
      Error(fields.position(),
            window.label + ": missing field \"open\", e.g. open: [\"mon-fri 22:00-06:00\"]");
    } else {
      std::vector<YamlPosition> positions;
      std::optional<std::vector<std::string>> entries;
      if (open_field->value.IsScalar()) {  // a single range needs no brackets
        entries = std::vector<std::string>{open_field->value.Scalar()};
        positions.push_back(open_field->value_position);
      } else {
        entries = ReadStringList(*open_field, diagnostics_, &positions);
      }
      if (entries && entries->empty()) {
        Error(open_field->value_position,
              open_field->label + ": the list is empty; the window would never open");
      } else if (entries) {
        for (size_t i = 0; i < entries->size(); ++i) {
          Result<WindowRange> range = Window::ParseRange((*entries)[i]);
          if (!range.ok()) {
            Error(positions[i], "window " + window.name + ": " + range.status().message());
          }
        }
        open = std::move(*entries);
      }
    }
    if (const YamlField* field = fields.Find("on_close"); field != nullptr && !field->is_null()) {
      if (auto text = ReadNonEmptyString(*field, diagnostics_)) {
        if (*text == "drain") {
          on_close = OnClose::kDrain;
        } else if (*text == "kill") {
          on_close = OnClose::kKill;
        } else {
          std::string hint = DidYouMean(*text, std::vector<std::string>{"drain", "kill"});
          if (hint.empty()) hint = " (one of: drain, kill)";
          Error(field->value_position, field->label + ": unknown value " + Quote(*text) + hint);
        }
      }
    }
    if (diagnostics_.size() != errors_before) return;
    Result<Window> parsed = Window::Parse(window.name, timezone, open, on_close);
    if (!parsed.ok()) {
      Error(window.key_position, parsed.status().message());
      return;
    }
    config_.windows.insert_or_assign(window.name, std::move(*parsed));
  }

  void ReadRetention(const YamlField& field) {
    const YamlMap retention =
        YamlMap::Read(field.value, "retention", kRetentionFields, "retention.", diagnostics_);
    for (const YamlField& entry : retention.fields()) {
      if (entry.is_null()) continue;
      if (entry.name == "max_runs_per_dag") {
        if (auto value = ReadInt(entry, diagnostics_, 1, INT_MAX)) {
          config_.retention_max_runs_per_dag = static_cast<int>(*value);
        }
      } else if (entry.name == "max_age") {
        if (auto value = ReadDuration(entry, diagnostics_, /*positive=*/true))
          config_.retention_max_age = *value;
      }
    }
  }

  void ReadAuth(const YamlField& field) {
    const YamlMap auth = YamlMap::Read(field.value, "auth", kAuthFields, "auth.", diagnostics_);
    for (const YamlField& entry : auth.fields()) {
      if (entry.is_null()) continue;
      if (entry.name == "token_file") {
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) config_.token_file = *text;
      } else if (entry.name == "read_requires_token") {
        if (auto value = ReadBool(entry, diagnostics_)) config_.read_requires_token = *value;
      }
    }
  }

  void ReadSlurm(const YamlField& field) {
    const YamlMap slurm = YamlMap::Read(field.value, "slurm", kSlurmFields, "slurm.", diagnostics_);
    SlurmConfig& out = config_.slurm;
    for (const YamlField& entry : slurm.fields()) {
      if (entry.is_null()) continue;
      const std::string& name = entry.name;
      if (name == "partition") {
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) out.partition = *text;
      } else if (name == "account") {
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) out.account = *text;
      } else if (name == "qos") {
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) out.qos = *text;
      } else if (name == "extra_args") {
        if (auto list = ReadStringList(entry, diagnostics_)) out.extra_args = std::move(*list);
      } else if (name == "poll_interval") {
        if (auto value = ReadDuration(entry, diagnostics_, /*positive=*/true)) out.poll_interval = *value;
      } else if (name == "shared_dir") {
        if (auto text = ReadNonEmptyString(entry, diagnostics_)) out.shared_dir = *text;
      }
    }
  }

  const std::string& path_;
  fs::path base_;
  YamlDiagnostics diagnostics_;
  Config config_;
};

}  // namespace

Result<Config> LoadConfigText(std::string_view text, const std::string& path) {
  try {
    return ConfigReader(path).Read(text);
  } catch (const std::exception& e) {
    // Nothing above should throw; if yaml-cpp does anyway, the config is refused, not a crash.
    return Status::InvalidArgument(path + ":1:1: cannot load the config: " + e.what());
  }
}

Result<Config> LoadConfig(const std::string& path) {
  std::string text;
  if (Status read = ReadWholeFile(path, text); !read.ok()) {
    return Status::IOError("cannot read config " + path + ": " + read.message());
  }
  return LoadConfigText(text, path);
}

}  // namespace nightshift
