//! Statement builders the migrations share.

use sea_orm_migration::prelude::*;

/// A foreign key from `table.column` to `to_table.to_column` whose rows go with their parent.
pub(crate) fn cascade_fk<T: IntoIden + Copy + 'static, U: IntoIden + Copy + 'static>(
    table: T,
    column: T,
    to_table: U,
    to_column: U,
) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, column).to(to_table, to_column).on_delete(ForeignKeyAction::Cascade).to_owned()
}

/// The (non-unique) index `name` on `columns` of `table`.
pub(crate) fn index<T: IntoIden + Copy + 'static>(name: &str, table: T, columns: &[T]) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for column in columns {
        stmt.col(*column);
    }
    stmt.to_owned()
}

/// The unique index `name` on `columns` of `table`.
pub(crate) fn unique_index<T: IntoIden + Copy + 'static>(name: &str, table: T, columns: &[T]) -> IndexCreateStatement {
    index(name, table, columns).unique().to_owned()
}

/// A 64-bit auto-increment primary key column.
pub(crate) fn big_id<T: IntoIden>(column: T) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().auto_increment().primary_key().to_owned()
}
