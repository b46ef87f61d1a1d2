// .gitignore matching as git does it: patterns with *, **, ?, [...], a trailing / (folders only), a
// leading or inner / (anchored to the .gitignore's folder), negation with !, comments with #,
// backslash escapes. The last matching pattern wins; deeper .gitignore files are read after
// (and so override) the ones above them.
#pragma once

#include <QRegularExpression>
#include <QString>
#include <QVector>

namespace folio::docs {

struct GitignoreRule {
  QString pattern;       // as written (after trimming), for reasons shown to the user
  QString source;        // the .gitignore it came from, relative to the root ("src/.gitignore")
  int line = 0;          // 1-based line in that file
  QString base;          // folder of that .gitignore relative to the root ("" or "src/")
  bool negated = false;
  bool dir_only = false;
  bool anchored = false;  // had a / at the start or in the middle: match the path from base
  QRegularExpression regex;
};

// Parses the text of one .gitignore found in folder `base` ("" for the root, else ending in '/').
QVector<GitignoreRule> parse_gitignore(const QString& text, const QString& base, const QString& source);

// The rules of every .gitignore from the root down to a folder.
class GitignoreStack {
 public:
  void add(const QVector<GitignoreRule>& rules) { rules_ += rules; }
  // Whether a path (relative to the root, '/' separated, no trailing '/') is ignored; when it is,
  // `rule` (if not null) gets the rule that decided.
  bool ignored(const QString& rel_path, bool is_dir, const GitignoreRule** rule = nullptr) const;
  int size() const { return static_cast<int>(rules_.size()); }

 private:
  QVector<GitignoreRule> rules_;
};

// A glob in gitignore syntax as a regular expression over a path ('/' separated), anchored at both ends.
QString gitignore_glob_to_regex(const QString& glob);

}  // namespace folio::docs
