/** ADDT fine-tuning (CGPO + RBGM): placeholder barrel. */
export {};
