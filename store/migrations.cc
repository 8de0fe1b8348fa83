#include "store/migrations.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

#include "core/strings.h"

namespace nightshift {
namespace {

constexpr std::string_view kSuffix = ".sql";

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

}  // namespace

int MigrationNumber(const EmbeddedFile& migration) {
  std::string_view name = migration.name;
  // "NNNN_" + at least one label character + ".sql".
  if (name.size() < 5 + 1 + kSuffix.size() || name[4] != '_' || !name.ends_with(kSuffix)) return 0;
  int number = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    number = number * 10 + (name[i] - '0');
  }
  std::string_view label = name.substr(5, name.size() - 5 - kSuffix.size());
  if (!std::all_of(label.begin(), label.end(), IsLabelChar)) return 0;
  return number;
}

Status ValidateMigrationNames(const std::vector<EmbeddedFile>& migrations) {
  std::vector<std::pair<int, std::string_view>> numbered;
  numbered.reserve(migrations.size());
  for (const EmbeddedFile& migration : migrations) {
    int number = MigrationNumber(migration);
    if (number == 0) {
      // A name that does not parse also covers "0000_x.sql": numbering starts at 1 so that
      // version 0 can mean "nothing applied".
      return Status::InvalidArgument("migration " + Quote(migration.name) +
                                     ": name must look like NNNN_label.sql with NNNN from 0001");
    }
    numbered.emplace_back(number, migration.name);
  }
  std::sort(numbered.begin(), numbered.end());
  for (size_t i = 0; i < numbered.size(); ++i) {
    if (i > 0 && numbered[i].first == numbered[i - 1].first) {
      return Status::InvalidArgument("migrations " + Quote(numbered[i - 1].second) + " and " +
                                     Quote(numbered[i].second) + " share number " +
                                     std::to_string(numbered[i].first));
    }
    if (numbered[i].first != static_cast<int>(i) + 1) {
      return Status::InvalidArgument("migration number " + std::to_string(i + 1) + " is missing (next is " +
                                     Quote(numbered[i].second) + ")");
    }
  }
  return Status::OK();
}

}  // namespace nightshift
