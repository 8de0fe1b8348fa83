// Renders numbers in the Prometheus text exposition format (version 0.0.4).
#pragma once

#include <map>
#include <string>

#include "scheduler/metrics.h"

namespace nightshift {

class PrometheusText {
 public:
  // One metric family: its HELP and TYPE lines come once, before its first sample.
  void Gauge(const std::string& name, const std::string& help, double value,
             const std::map<std::string, std::string>& labels = {});
  void Counter(const std::string& name, const std::string& help, double value,
               const std::map<std::string, std::string>& labels = {});
  void HistogramOf(const std::string& name, const std::string& help, const Histogram& histogram);
  const std::string& text() const { return text_; }

 private:
  void Header(const std::string& name, const std::string& help, const char* type);
  std::string text_;
  std::string last_family_;
};

}  // namespace nightshift
