// The metrics of a request as JSON: what folio-cli --metrics-json writes and folio-bench prints.
#pragma once

#include <string>

#include "core/engine/engine.h"

namespace folio {

std::string metrics_to_json(const Metrics& m, int indent = 2);

}  // namespace folio
