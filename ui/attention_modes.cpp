#include "ui/attention_modes.h"

namespace folio::ui {

const std::vector<AttentionMode>& attention_modes() {
  static const std::vector<AttentionMode> modes = {
      {"dense", "Dense (every causal tile)", false},
  };
  return modes;
}

QStringList attention_mode_names() {
  QStringList names;
  for (const auto& m : attention_modes()) names << m.name;
  return names;
}

}  // namespace folio::ui
