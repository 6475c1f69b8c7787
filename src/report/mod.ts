/** Main-job reports (JSON, Markdown, HTML with SVG plots): placeholder barrel. */
export {};
