#include "web/prometheus.h"

#include <cmath>
#include <cstdio>

namespace nightshift {
namespace {

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string Labels(const std::map<std::string, std::string>& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ",";
    out += k + "=\"" + EscapeLabel(v) + "\"";
  }
  return out + "}";
}

}  // namespace

void PrometheusText::Header(const std::string& name, const std::string& help, const char* type) {
  if (last_family_ == name) return;
  last_family_ = name;
  text_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PrometheusText::Gauge(const std::string& name, const std::string& help, double value,
                           const std::map<std::string, std::string>& labels) {
  Header(name, help, "gauge");
  text_ += name + Labels(labels) + " " + Number(value) + "\n";
}

void PrometheusText::Counter(const std::string& name, const std::string& help, double value,
                             const std::map<std::string, std::string>& labels) {
  Header(name, help, "counter");
  text_ += name + Labels(labels) + " " + Number(value) + "\n";
}

void PrometheusText::HistogramOf(const std::string& name, const std::string& help, const Histogram& h) {
  Header(name, help, "histogram");
  for (size_t i = 0; i < Histogram::kBuckets.size(); ++i) {
    text_ += name + "_bucket{le=\"" + Number(Histogram::kBuckets[i]) + "\"} " + std::to_string(h.counts[i]) + "\n";
  }
  text_ += name + "_bucket{le=\"+Inf\"} " + std::to_string(h.count) + "\n";
  text_ += name + "_sum " + Number(h.sum) + "\n";
  text_ += name + "_count " + std::to_string(h.count) + "\n";
}

}  // namespace nightshift
