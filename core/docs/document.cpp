#include "core/docs/document.h"

#include <QFileInfo>
#include <QHash>

namespace folio::docs {

QString language_for_file(const QString& file_name) {
  static const QHash<QString, QString> by_suffix = {
      {"c", "C"},          {"h", "C/C++ header"}, {"cc", "C++"},       {"cpp", "C++"},     {"cxx", "C++"},
      {"hpp", "C++"},      {"hh", "C++"},         {"cu", "CUDA"},      {"cuh", "CUDA"},    {"py", "Python"},
      {"rs", "Rust"},      {"go", "Go"},          {"java", "Java"},    {"kt", "Kotlin"},   {"js", "JavaScript"},
      {"ts", "TypeScript"}, {"tsx", "TypeScript"}, {"jsx", "JavaScript"}, {"rb", "Ruby"},  {"php", "PHP"},
      {"cs", "C#"},        {"swift", "Swift"},    {"m", "Objective-C"}, {"scala", "Scala"}, {"sh", "Shell"},
      {"bash", "Shell"},   {"zsh", "Shell"},      {"pl", "Perl"},      {"lua", "Lua"},     {"r", "R"},
      {"sql", "SQL"},      {"html", "HTML"},      {"css", "CSS"},      {"xml", "XML"},     {"json", "JSON"},
      {"yaml", "YAML"},    {"yml", "YAML"},       {"toml", "TOML"},    {"ini", "INI"},     {"cmake", "CMake"},
      {"md", "Markdown"},  {"rst", "reStructuredText"}, {"txt", "Text"}, {"tex", "LaTeX"}, {"f90", "Fortran"},
      {"hs", "Haskell"},   {"ml", "OCaml"},       {"ex", "Elixir"},    {"erl", "Erlang"},  {"dart", "Dart"},
      {"zig", "Zig"},      {"nim", "Nim"},        {"jl", "Julia"},     {"qml", "QML"},     {"proto", "Protocol Buffers"}};
  const QFileInfo info(file_name);
  if (info.fileName() == "CMakeLists.txt") return "CMake";
  if (info.fileName() == "Makefile" || info.fileName() == "GNUmakefile") return "Make";
  if (info.fileName() == "Dockerfile") return "Dockerfile";
  return by_suffix.value(info.suffix().toLower());
}

}  // namespace folio::docs

namespace folio::docs {

namespace {
folio::ErrorCode code_for(DocumentProblem problem) {
  switch (problem) {
    case DocumentProblem::NotFound: return folio::ErrorCode::FileNotFound;
    case DocumentProblem::Cancelled: return folio::ErrorCode::Cancelled;
    case DocumentProblem::TooLarge: return folio::ErrorCode::BadArgument;
    default: return folio::ErrorCode::FileUnreadable;
  }
}
}  // namespace

const char* document_problem_name(DocumentProblem problem) {
  switch (problem) {
    case DocumentProblem::NotFound: return "not found";
    case DocumentProblem::Unreadable: return "unreadable";
    case DocumentProblem::Empty: return "empty";
    case DocumentProblem::Encrypted: return "password-protected";
    case DocumentProblem::Broken: return "broken";
    case DocumentProblem::NoTextLayer: return "no text layer";
    case DocumentProblem::Binary: return "binary";
    case DocumentProblem::TooLarge: return "too large";
    case DocumentProblem::Cancelled: return "cancelled";
  }
  return "unknown";
}

DocumentError::DocumentError(DocumentProblem problem, const QString& path, const QString& message)
    : folio::Error(code_for(problem), message.toStdString()), problem_(problem), path_(path) {}

QString citation_label(const Document& doc, int page_index) {
  if (!doc.cite_by_page_number && page_index >= 0 && page_index < doc.page_labels.size() &&
      !doc.page_labels[page_index].isEmpty())
    return doc.page_labels[page_index];
  if (!doc.cite_by_page_number && doc.page_labels.isEmpty()) {  // a document made by hand
    for (const Section& s : doc.sections)
      if (s.page_index == page_index && !s.page_label.isEmpty()) return s.page_label;
  }
  return QString::number(page_index + 1);
}

QString join_ranges(const QVector<int>& sorted_numbers) {
  QStringList parts;
  for (qsizetype i = 0; i < sorted_numbers.size();) {
    qsizetype j = i;
    while (j + 1 < sorted_numbers.size() && sorted_numbers[j + 1] == sorted_numbers[j] + 1) ++j;
    parts << (j == i ? QString::number(sorted_numbers[i])
                     : QString("%1-%2").arg(sorted_numbers[i]).arg(sorted_numbers[j]));
    i = j + 1;
  }
  return parts.join(", ");
}

}  // namespace folio::docs
