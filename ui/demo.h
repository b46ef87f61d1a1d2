// The demo documents that ship in the resources (a fictional weather station's manual, and a long
// text with planted facts for folio-needle), their suggested questions, and the welcome text.
#pragma once

#include <QString>
#include <QStringList>

namespace folio::ui {

// Registers Folio's Qt resources (the library is static: call once before using them).
void init_resources();

// The demo documents: the weather station's manual (short, for any instruct model) and
// planted-facts.md (about 12K tokens of filler with four planted facts, for folio-needle, the
// project's own long-context retrieval model, resources/models/folio-needle).
enum class DemoDocument { None, Manual, PlantedFacts };

// The demo that suits the model at model_path: PlantedFacts for folio-needle, else Manual.
DemoDocument demo_for_model(const QString& model_path);

// The file name of a demo document ("" for None).
QString demo_file_name(DemoDocument which);

// The demo document as a file on disk (copied out of the resources into the app's data folder,
// so loaders and the source pane treat it like any other file); "" if that fails.
QString demo_document_path(DemoDocument which = DemoDocument::Manual);

// Questions the demo document answers (none for None).
QStringList demo_questions(DemoDocument which = DemoDocument::Manual);

// What a right answer to each of demo_questions(which) contains (any one of the phrases); empty
// where no check is known (PlantedFacts: resources/demo/planted-facts.json holds its answers).
QList<QStringList> demo_answers(DemoDocument which = DemoDocument::Manual);

// The welcome text shown before the first question (Markdown).
QString welcome_markdown(const QString& model_name, bool tiny_model, DemoDocument demo);

}  // namespace folio::ui
