// The demo document that ships in the resources (a fictional weather station's manual with facts
// to ask about), its suggested questions, and the welcome text.
#pragma once

#include <QString>
#include <QStringList>

namespace folio::ui {

// Registers Folio's Qt resources (the library is static: call once before using them).
void init_resources();

// The demo document as a file on disk (copied out of the resources into the app's data folder,
// so loaders and the source pane treat it like any other file); "" if that fails.
QString demo_document_path();

// Questions the demo document answers.
QStringList demo_questions();

// The welcome text shown before the first question (Markdown).
QString welcome_markdown(const QString& model_name, bool tiny_model, bool demo_loaded);

}  // namespace folio::ui
