export { Field } from "./Field";
export { formErrors } from "./FormErrors";
export { Loading, EmptyState, ErrorState, FormAlert, Notice } from "./States";
export { Table, type Column } from "./Table";
export { CopyButton } from "./CopyButton";
export { ConfirmDialog } from "./ConfirmDialog";
export { PageHeader } from "./PageHeader";
