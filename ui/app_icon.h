// Folio's identity on the desktop: the application id that names the desktop entry, the AppStream
// metainfo and the icon (installer/), and the icon itself.
#pragma once

#include <QIcon>

namespace folio::ui {

// Reverse-DNS id: io.github.folio.Folio.desktop, io.github.folio.Folio.metainfo.xml and the
// hicolor icon io.github.folio.Folio.{svg,png} all carry it.
inline constexpr char kAppId[] = "io.github.folio.Folio";

// The hicolor PNGs of installer/icons (rendered from its SVG), built in through resources/folio.qrc,
// so the window, the About box and the desktop menu show the same picture.
QIcon app_icon();

}  // namespace folio::ui
