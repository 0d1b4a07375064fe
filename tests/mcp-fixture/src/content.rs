//! What the prompts render and the resources contain.

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult, JsonObject, PromptMessage,
        ReadResourceResult, ResourceContents, Role,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use crate::{
    catalog::{PNG_1X1_BASE64, prompt, resource},
    handler::FixtureServer,
    inputs::{Ask, InputRound, elicited_text},
    skills,
};

fn prompt_argument(arguments: Option<&JsonObject>, name: &str) -> Result<String, ErrorData> {
    arguments
        .and_then(|arguments| arguments.get(name))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing argument `{name}`"), None))
}

fn rendered(messages: Vec<PromptMessage>) -> GetPromptResponse {
    GetPromptResult::new(messages).into()
}

/// The `{id}` of a `test://template/{id}/data` URI.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix(resource::TEMPLATE_PREFIX)?
        .strip_suffix(resource::TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

impl FixtureServer {
    pub(crate) async fn render_prompt(
        &self,
        request: GetPromptRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let arguments = request.arguments.as_ref();
        match request.name.as_str() {
            prompt::SIMPLE => Ok(rendered(vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )])),
            prompt::WITH_ARGUMENTS => {
                let arg1 = prompt_argument(arguments, "arg1")?;
                let arg2 = prompt_argument(arguments, "arg2")?;
                Ok(rendered(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]))
            }
            prompt::EMBEDDED_RESOURCE => {
                let uri = prompt_argument(arguments, "resourceUri")?;
                Ok(rendered(vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(ResourceContents::text(
                            "Embedded resource content for testing.",
                            uri,
                        )),
                    ),
                    PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
                ]))
            }
            prompt::WITH_IMAGE => Ok(rendered(vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_1X1_BASE64, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ])),
            prompt::INPUT_REQUIRED => {
                let mut round = InputRound::start(
                    &self.state.request_state,
                    prompt::INPUT_REQUIRED,
                    context,
                    request.input_responses,
                    request.request_state.as_deref(),
                    self.state.options.session_mode == crate::SessionMode::Stateful,
                )?;
                let asks = vec![Ask::form(
                    "user_context",
                    "What context should the prompt use?",
                    json!({
                        "type": "object",
                        "properties": { "context": { "type": "string" } },
                        "required": ["context"]
                    }),
                )];
                round.require_capabilities(&asks)?;
                let Some(answers) = round.ask(asks).await? else {
                    return Ok(round.input_required().into());
                };
                let supplied =
                    elicited_text(&answers["user_context"], "context").unwrap_or_else(|| "none given".into());
                Ok(rendered(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with context: {supplied}"),
                )]))
            }
            prompt::DYNAMIC if self.state.dynamic_prompt_listed() => {
                Ok(rendered(vec![PromptMessage::new_text(
                    Role::User,
                    "This prompt exists because test_trigger_prompt_change added it.",
                )]))
            }
            unknown => Err(ErrorData::invalid_params(
                format!("Unknown prompt: {unknown}"),
                None,
            )),
        }
    }

    /// The contents of `uri`, or a resource-not-found error naming it.
    pub(crate) fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        if self.state.options.skills_extension
            && let Some(file) = skills::read_file(uri)
        {
            return Ok(file);
        }
        if let Some(text) = self.own_resource(uri) {
            return Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri)]));
        }
        let contents = match uri {
            resource::STATIC_TEXT => ResourceContents::text(resource::STATIC_TEXT_CONTENT, uri),
            resource::STATIC_BINARY => {
                ResourceContents::blob(PNG_1X1_BASE64, uri).with_mime_type("image/png")
            }
            resource::WATCHED => ResourceContents::text(
                format!(
                    "Watched resource content, revision {}",
                    self.state.watched_resource_revision()
                ),
                uri,
            ),
            _ => match template_id(uri) {
                Some(id) => ResourceContents::text(
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                        .to_string(),
                    uri,
                )
                .with_mime_type("application/json"),
                None => {
                    return Err(ErrorData::resource_not_found(
                        "Resource not found",
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }

    /// The text of one of this instance's own resources (`FixtureOptions::own_resources`).
    fn own_resource(&self, uri: &str) -> Option<String> {
        let name = self.state.options.own_resources.as_deref()?;
        let path = uri.strip_prefix(&format!("test://{name}/"))?;
        match path {
            "info" => Some(format!("Served by fixture {name}")),
            "watched" => Some(format!(
                "Watched resource of fixture {name}, revision {}",
                self.state.watched_resource_revision()
            )),
            _ => {
                let id = path.strip_prefix("items/").filter(|id| !id.is_empty())?;
                Some(format!("Item {id} from fixture {name}"))
            }
        }
    }
}
