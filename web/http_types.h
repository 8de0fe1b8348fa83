// Requests and responses as plain data, so routing is a pure function tested without sockets.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace nightshift {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query, e.g. "/api/v1/dags?limit=5"
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string Header(const std::string& lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Splits "/a/b?x=1&y=%20" into the path and decoded query parameters.
struct ParsedTarget {
  std::string path;
  std::map<std::string, std::string> query;
};
ParsedTarget ParseTarget(const std::string& target);
// Percent-decoding; `plus_is_space` for query strings only ("+" in a path is a plus: run ids
// such as "manual__2026-11-28T02:00:00+00:00" contain one).
std::string UrlDecode(const std::string& text, bool plus_is_space = true);

}  // namespace nightshift
