#include "core/store/store_schema.h"

namespace folio::store::sql {

std::span<const char* const> migration_to(int version) {
  switch (version) {
    case 1:
      return kMigrationToV1;
    case 2:
      return kMigrationToV2;
    case 3:
      return kMigrationToV3;
    case 4:
      return kMigrationToV4;
    case 5:
      return kMigrationToV5;
    default:
      return {};
  }
}

}  // namespace folio::store::sql
